"""`deepliver segment INPUT -o OUT`: liver and tumor pre-segmentation with the bundled models."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from deepliver.cli.options import add_device
from deepliver.errors import DeepLiverError
from deepliver.inference.cascade import segment_and_write
from deepliver.io.load import load_volume
from deepliver.models.card import DETECTION_ARCHITECTURES
from deepliver.progress import Reporter, within
from deepliver.volume import Volume


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="pre-segment the liver and liver tumors of a CT series",
        description="Find the liver and liver tumors on a CT (a DICOM folder, a NIfTI or an NRRD "
        "file) with the bundled models, and write under OUT: the label map on the input's exact "
        "grid (labels.nii.gz, labels.seg.nrrd; labels.dcm with --dicom-seg), the lesion table "
        "(lesions.csv, lesions.json), summary.json and overview.png.",
    )
    parser.add_argument("input", type=Path, help="DICOM folder or file, NIfTI or NRRD file")
    parser.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    parser.add_argument("--series", metavar="UID", help="the series, when the folder holds several")
    parser.add_argument(
        "--model",
        default="unet2d",
        metavar="NAME",
        help="model family: the bundled liver-NAME and tumor-NAME models (default %(default)s)",
    )
    add_device(parser)
    parser.add_argument(
        "--detector",
        choices=DETECTION_ARCHITECTURES,
        help="also find 3D lesion boxes with the bundled tumor-DETECTOR model "
        "(detections.csv, detections.json)",
    )
    parser.add_argument(
        "--dicom-seg", action="store_true", help="also write a DICOM SEG (DICOM input only)"
    )
    parser.add_argument(
        "--force", action="store_true", help="segment a series whose modality is not CT"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    timings: dict[str, float] = {}
    start = time.perf_counter()
    reporter.stage("reading", 0.0)
    ct, identity = load_volume(args.input, args.series, progress=within(reporter.stage, 0, 0.15))
    timings["read"] = time.perf_counter() - start
    if args.dicom_seg and identity is None:
        raise DeepLiverError(f"{args.input}: --dicom-seg needs a DICOM series as input")
    if args.dicom_seg and identity.missing_uids:
        raise DeepLiverError(
            f"{args.input}: --dicom-seg cannot be met: a DICOM SEG references its source slices"
            f" by UID, and these files lack {', '.join(identity.missing_uids)}"
        )
    if identity is not None and identity.modality != "CT" and not args.force:
        raise DeepLiverError(
            f"{args.input}: series {identity.series_uid} is {identity.modality or 'of no modality'}"
            ", not CT; the models are trained on CT (use --force to run them anyway)"
        )
    require_finite(ct, args.input)

    run = segment_and_write(
        ct,
        args.out,
        family=args.model,
        device=args.device,
        identity=identity,
        dicom_source=args.input if identity is not None else None,
        dicom_seg=args.dicom_seg,
        detector=args.detector,
        timings=timings,
        progress=within(reporter.stage, 0.15, 1.0),
    )
    text = describe(run.paths["summary"], run.result.notes, run.device)
    if "detections_json" in run.paths:
        found = json.loads(run.paths["detections_json"].read_text())["lesions"]
        text += f"\nDetector {args.detector}: {len(found)} lesion box(es) in detections.csv"
    reporter.log(text)
    reporter.result(**run.paths)
    return 0


def require_finite(ct: Volume, path: Path) -> None:
    """NaN or infinite HU mean a broken conversion upstream: refuse rather than guess."""
    if np.issubdtype(ct.array.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(ct.array)))
        if bad:
            raise DeepLiverError(f"{path}: {bad} voxels are NaN or infinite, not HU values")


def describe(summary_path: Path, notes: list[str], device: str) -> str:
    data = json.loads(summary_path.read_text())
    models = ", ".join(f"{m['name']} {m['version']}" for m in data["models"]) or "none"
    burden = data["tumor_burden_percent"]
    lines = [
        f"Liver {data['liver_volume_ml']:.0f} mL, tumors {data['tumor_volume_ml']:.1f} mL "
        f"({'-' if burden is None else f'{burden:.1f}'}% burden), {data['lesion_count']} lesion(s)",
        f"Models {models} on {device}",
        "Timings " + ", ".join(f"{k} {v:.1f} s" for k, v in data["timings_s"].items()),
    ]
    lines += [f"Note: {note}" for note in dict.fromkeys([*notes, *data.get("notes", [])])]
    lines.append(f"Results in {summary_path.parent}")
    return "\n".join(lines)
