"""`deepliver evaluate --pred P --truth T -o REPORT`: score label maps against the truth."""

from __future__ import annotations

import argparse
from pathlib import Path

from deepliver.progress import Reporter, within

DEFAULT_REPORT = Path("evaluation-report")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score predicted label maps against the truth (voxel, surface, lesion metrics)",
        description="Pair the cases of --pred and --truth (folders of NIfTI/NRRD label maps, "
        ".seg.nrrd or DICOM SEG files, or annotation stores; by file name, then by Series "
        "Instance UID) and score each: Dice, Jaccard, precision, recall, specificity, accuracy, "
        "Hausdorff, HD95, ASSD, surface Dice, volumes, and lesion detection. Writes "
        "metrics.csv, lesions.csv, summary.md and PNG plots to the report folder. Cases "
        "without a partner are listed in the report.",
    )
    parser.add_argument("--pred", type=Path, required=True, help="predicted labels")
    parser.add_argument("--truth", type=Path, required=True, help="true labels")
    add_report_options(parser)
    parser.add_argument(
        "--resample",
        action="store_true",
        help="put a prediction on another grid onto the truth grid (nearest neighbour; the "
        "report says so) instead of refusing it",
    )
    parser.set_defaults(run=run)


def add_report_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o", "--out", type=Path, default=DEFAULT_REPORT, help="report folder (default %(default)s)"
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=2.0,
        metavar="MM",
        help="surface Dice tolerance in mm (default %(default)s)",
    )


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    from deepliver.evaluation.evaluate import evaluate_paths

    evaluation = evaluate_paths(
        args.pred,
        args.truth,
        tolerance_mm=args.tolerance,
        resample=args.resample,
        progress=within(reporter.stage, 0.0, 0.9),
    )
    return finish(evaluation, args.out, reporter)


def finish(evaluation, out: Path, reporter: Reporter) -> int:
    """Write the report, print its main table, and say where it is."""
    from deepliver.evaluation.evaluate import conventions
    from deepliver.evaluation.report import seed_table, write_report

    reporter.stage("writing the report", 0.9)
    paths = write_report(evaluation, out, conventions(evaluation.tolerance_mm))
    cases = len({row["case"] for row in evaluation.rows})
    lines = [seed_table(evaluation), "", f"{cases} case(s) scored"]
    for side, names in evaluation.unmatched.items():
        if names:
            lines.append(f"{len(names)} case(s) in {side}, not scored: {', '.join(names)}")
    lines += [f"Note: {note}" for note in evaluation.notes]
    lines.append(f"Report in {out} (summary.md, metrics.csv, plots)")
    reporter.log("\n".join(lines))
    reporter.result(**{name: str(path) for name, path in paths.items()})
    return 0
