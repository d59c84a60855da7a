"""`deepliver slices DATASET -o OUT`: 2D tumor-detection datasets (VOC, YOLO) from 3D CT."""

from __future__ import annotations

import argparse
from pathlib import Path

from deepliver.cli.options import add_phantom_size
from deepliver.progress import Reporter


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "slices",
        help="export axial slices with tumor boxes as a 2D detection dataset (VOC, YOLO)",
        description="Cut the axial slices with liver from 3D CT cases with label maps into "
        "PNG images with tumor boxes (Pascal VOC XML and/or YOLO text), split by patient into "
        "train/valid/test. Every tumor slice is written, plus liver slices without tumor as "
        "negatives (empty label files). Writes classes.txt, dataset.yaml, README.md and "
        "manifest.json (settings, split, sha256 of every file) to OUT.",
    )
    parser.add_argument(
        "dataset",
        metavar="DATASET",
        help="phantom:N (training phantoms, seeds 1000..1000+N-1, made on the fly) or a "
        "dataset folder (imagesTr/labelsTr or imagesTs/labelsTs, or case folders with "
        "ct.nii.gz and labels.nii.gz)",
    )
    parser.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    parser.add_argument("--format", choices=("voc", "yolo", "both"), default="both")
    parser.add_argument(
        "--channels",
        type=int,
        choices=(1, 3),
        default=1,
        help="1: the slice (grayscale); 3: the slice and its two neighbours as RGB "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--negatives",
        type=float,
        default=0.5,
        metavar="R",
        help="liver slices without tumor per slice with tumor (default %(default)s)",
    )
    parser.add_argument(
        "--split",
        type=float,
        nargs=3,
        default=(0.7, 0.15, 0.15),
        metavar=("TRAIN", "VALID", "TEST"),
        help="fractions of the patients (default 0.7 0.15 0.15)",
    )
    parser.add_argument("--seed", type=int, default=0, help="split and negatives (default 0)")
    parser.add_argument(
        "--window",
        type=float,
        nargs=2,
        default=(-100.0, 250.0),
        metavar=("LOW", "HIGH"),
        help="HU window mapped to 0..255 (default -100 250)",
    )
    add_phantom_size(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    from deepliver.datasets import cases_from
    from deepliver.detection.slices import FORMATS, export_slices
    from deepliver.training.data import TRAIN_SEED_START

    cases = cases_from(args.dataset, tuple(args.size), TRAIN_SEED_START, part="train")
    manifest = export_slices(
        cases,
        args.out,
        formats=FORMATS if args.format == "both" else (args.format,),
        channels=args.channels,
        negatives=args.negatives,
        fractions=tuple(args.split),
        seed=args.seed,
        window=tuple(args.window),
        progress=reporter.stage,
    )
    lines = [
        f"{name}: {s['cases']} case(s), {s['slices']} slice(s) "
        f"({s['tumor_slices']} with tumor), {s['boxes']} box(es)"
        for name, s in manifest["summary"].items()
    ]
    lines += [f"Note: {note}" for note in manifest["notes"]]
    lines.append(f"Dataset in {args.out} (README.md, manifest.json, dataset.yaml)")
    reporter.log("\n".join(lines))
    reporter.result(out=str(args.out), manifest=str(args.out / "manifest.json"))
    return 0
