"""`deepliver compare --models A,B --data D -o REPORT`: models side by side on the same cases."""

from __future__ import annotations

import argparse

from deepliver.cli.evaluate import add_report_options, finish
from deepliver.cli.options import add_device, add_phantom_size
from deepliver.progress import Reporter, within


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="run several models on the same cases and compare their metrics",
        description="Run each model (a family of bundled liver-NAME and tumor-NAME models) on "
        "the same cases and score them as `deepliver evaluate` does, in one report: the "
        "original comparison table (Dice, Jaccard, Hausdorff, precision, recall, accuracy, "
        "specificity) per model, plus HD95, lesion F1, time per case and model size.",
    )
    parser.add_argument(
        "--models",
        default="unet2d",
        help="comma-separated model families (default %(default)s)",
    )
    parser.add_argument(
        "--data",
        default="phantom:10",
        help="phantom:N (held-out phantoms, seeds 0..N-1, made on the fly) or a dataset folder "
        "(imagesTs/labelsTs or imagesTr/labelsTr, or case folders with ct.nii.gz and "
        "labels.nii.gz); default %(default)s",
    )
    add_phantom_size(parser)
    add_device(parser)
    add_report_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    from deepliver.datasets import cases_from
    from deepliver.errors import DeepLiverError
    from deepliver.evaluation.compare import compare

    families = [name.strip() for name in args.models.split(",") if name.strip()]
    if not families or len(set(families)) != len(families):
        raise DeepLiverError(f"--models {args.models!r}: name each model once, comma-separated")
    evaluation = compare(
        families,
        cases_from(args.data, tuple(args.size)),
        device=args.device,
        tolerance_mm=args.tolerance,
        progress=within(reporter.stage, 0.0, 0.9),
    )
    return finish(evaluation, args.out, reporter)
