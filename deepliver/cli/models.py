"""`deepliver models list|add|verify|remove|operating-point`: the bundled models and the user's
own."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from deepliver.cli.options import add_device
from deepliver.errors import DeepLiverError
from deepliver.models.card import verify_weights
from deepliver.models.registry import (
    USER_MODELS_ENV,
    RegistryEntry,
    add_model,
    load_registry,
    remove_model,
    select,
    user_models_dir,
    verify_entry,
)
from deepliver.progress import MODES, Reporter


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list, add, verify and remove models (bundled and the user's)",
        description="The model registry: the bundled models (read-only) and the user's models "
        f"in ${USER_MODELS_ENV} (default ~/.deepliver/models), one folder per model named "
        "NAME-VERSION holding model.json (the card) and weights.pt. `deepliver segment` finds "
        "a bundled model first, then the user's highest version.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser(
        "list",
        help="every model: name, version, stage, where, validation metrics, weights check",
        description="List every model, bundled and the user's, with its validation metrics and "
        "whether its weights match the card's sha256. Cards that cannot be read are listed as "
        "problems.",
    )
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(run=run_list)

    add = actions.add_parser(
        "add",
        help="check a model folder and copy it into the user's models",
        description="Check FOLDER (the card validates, weights.pt matches its sha256 and loads "
        "into the network the card describes), then copy it into the user's models as "
        "NAME-VERSION, both taken from the card. A model whose name and version are registered "
        "already is refused.",
    )
    add.add_argument("folder", type=Path, help="a model folder (model.json and weights.pt)")
    add.set_defaults(run=run_add)

    verify = actions.add_parser(
        "verify",
        help="re-check the weights of one model or all (exit 1 if any fails)",
        description="Re-check the sha256 and loadability of the models named NAME (every "
        "version), or of all models; exit 1 naming every model that fails.",
    )
    verify.add_argument("name", nargs="?", help="model name or folder name (default: all)")
    verify.set_defaults(run=run_verify)

    remove = actions.add_parser(
        "remove",
        help="delete a user model (bundled models are read-only)",
        description="Delete the user model NAME; --version says which when several are registered.",
    )
    remove.add_argument("name", help="model name or folder name")
    remove.add_argument("--version", help="the version to remove")
    remove.set_defaults(run=run_remove)

    point = actions.add_parser(
        "operating-point",
        help="choose a detector's operating point again, into a copy of the model",
        description="Run the detector in FOLDER on validation phantoms of its own training "
        "data (in the liver the registered unet2d cascade finds there, as `deepliver segment "
        "--detector` runs it) and write a copy of the model to OUT whose card reports lesions "
        "from the lowest score with at most one false positive per scan. The weights are "
        "copied unchanged; FOLDER is left as it was.",
    )
    point.add_argument("folder", type=Path, help="a detector's model folder")
    point.add_argument("-o", "--out", type=Path, required=True, help="new model folder")
    point.add_argument(
        "--validation",
        type=_positive_int,
        help="validation phantoms (default: as many as it trained with)",
    )
    point.add_argument("--model-version", help="the copy's version (default: the model's)")
    add_device(point)
    point.set_defaults(run=run_operating_point)

    for action in actions.choices.values():  # `deepliver models list --progress jsonl` too
        action.add_argument("--progress", choices=MODES, default=argparse.SUPPRESS)


# --- list ------------------------------------------------------------------------------------


def model_record(entry: RegistryEntry) -> dict:
    card = entry.card
    try:
        verify_weights(entry.folder, card)
        problem = ""
    except DeepLiverError as error:
        problem = str(error)
    return {
        "name": card.name,
        "version": card.version,
        "stage": card.stage,
        "architecture": card.architecture,
        "where": entry.where,
        "path": str(entry.folder),
        "metrics": {k: v for k, v in card.metrics.items() if k.startswith("validation_")},
        "weights_verified": not problem,
        "weights_problem": problem,
    }


def format_metrics(metrics: dict) -> str:
    shown = [
        f"{key.removeprefix('validation_')} {value:.4g}"
        for key, value in metrics.items()
        if key != "validation_cases" and isinstance(value, int | float)
    ]
    return ", ".join(shown) or "-"


def format_table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    return [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


def run_list(args: argparse.Namespace, reporter: Reporter) -> int:
    reporter.stage("reading the models")
    registry = load_registry()
    models = [model_record(entry) for entry in registry.models]
    problems = [{"path": str(e.folder), "message": e.problem} for e in registry.broken]
    problems += [{"path": str(path), "message": text} for path, text in registry.problems]
    if args.json:
        reporter.log(json.dumps({"models": models, "problems": problems}, indent=2))
    else:
        reporter.log("\n".join(format_list(models, problems)))
    reporter.result(models=models, problems=problems)
    return 0


def format_list(models: list[dict], problems: list[dict]) -> list[str]:
    lines = [f"{len(models)} model(s); user models in {user_models_dir()}"]
    rows = [["NAME", "VERSION", "STAGE", "ARCH", "WHERE", "WEIGHTS", "VALIDATION", "PATH"]]
    for m in models:
        weights = "ok" if m["weights_verified"] else "FAILED"
        rows.append(
            [m["name"], m["version"], m["stage"], m["architecture"], m["where"], weights]
            + [format_metrics(m["metrics"]), m["path"]]
        )
    if models:
        lines += [""] + format_table(rows)
    failed = [m for m in models if not m["weights_verified"]]
    lines += [f"    {m['name']} {m['version']}: {m['weights_problem']}" for m in failed]
    if problems:
        lines += ["", f"{len(problems)} model folder(s) could not be read:"]
        lines += [f"    {p['path']}: {p['message']}" for p in problems]
    return lines


# --- add, verify, remove ---------------------------------------------------------------------


def run_add(args: argparse.Namespace, reporter: Reporter) -> int:
    reporter.stage(f"checking {args.folder}")
    entry = add_model(args.folder)
    card = entry.card
    reporter.log(f"Added model {card.name} {card.version} ({card.stage}, {card.architecture})")
    reporter.log(f"    {entry.folder}")
    reporter.result(model=entry.folder, name=card.name, version=card.version)
    return 0


def run_verify(args: argparse.Namespace, reporter: Reporter) -> int:
    registry = load_registry()
    entries = select(registry, args.name) if args.name else list(registry.entries)
    if args.name and not entries:
        raise DeepLiverError(f"no model called {args.name!r} (see `deepliver models list`)")
    failed = []
    for number, entry in enumerate(entries):
        reporter.stage(f"verifying {entry.folder.name}", number / len(entries))
        problem = verify_entry(entry)
        reporter.log(f"{_label(entry)}: {'FAILED: ' + problem if problem else 'ok'}")
        if problem:
            failed.append(_label(entry))
    for path, text in registry.problems if not args.name else ():
        reporter.log(f"{path}: FAILED: {text}")
        failed.append(str(path))
    if failed:
        raise DeepLiverError(f"{len(failed)} model(s) failed verification: {', '.join(failed)}")
    reporter.result(verified=[str(entry.folder) for entry in entries])
    return 0


def run_operating_point(args: argparse.Namespace, reporter: Reporter) -> int:
    from deepliver.detection.operating_point import choose_again
    from deepliver.inference.cascade import resolve_device

    reporter.stage(f"choosing the operating point of {args.folder}")
    command = f"deepliver models operating-point {args.folder} -o {args.out}"
    if args.validation:
        command += f" --validation {args.validation}"
    if args.model_version:
        command += f" --model-version {args.model_version}"
    card = choose_again(
        args.folder,
        args.out,
        args.validation,
        args.model_version,
        resolve_device(args.device),
        command,
    )
    metrics = card.metrics
    reporter.log(
        f"{card.name} {card.version}: lesions from score {card.lesion_score:.4f}; on "
        f"{metrics['validation_scans']} validation phantoms recall (>= 10 mm) "
        f"{metrics['validation_lesion_recall_10mm']:.3f} of "
        f"{metrics['validation_lesions_10mm']} lesions at {metrics['validation_fp_per_scan']:.2f}"
        f" false positives per scan\n    {args.out}\n"
        f"Register it with `deepliver models add {args.out}`."
    )
    reporter.result(model=args.out, lesion_score=card.lesion_score, metrics=metrics)
    return 0


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def _label(entry: RegistryEntry) -> str:
    card = entry.card
    name = f"{card.name} {card.version}" if card is not None else entry.folder.name
    return f"{name} ({entry.where}: {entry.folder})"


def run_remove(args: argparse.Namespace, reporter: Reporter) -> int:
    entry = remove_model(args.name, args.version)
    reporter.log(f"Removed {_label(entry)}")
    reporter.result(removed=entry.folder)
    return 0
