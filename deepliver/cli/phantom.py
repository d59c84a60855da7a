"""`deepliver phantom OUT`: a synthetic abdominal CT with liver and tumor labels."""

from __future__ import annotations

import argparse
from pathlib import Path

from deepliver.phantom import PhantomSpec, make_phantom
from deepliver.phantom.files import write_phantom
from deepliver.progress import Reporter, within


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "phantom",
        help="write a synthetic abdominal CT (DICOM and NIfTI) with its label map",
        description="Write a synthetic abdominal CT with its label map (0 background, 1 liver, "
        "2 tumor): OUT/dicom/ (a CT Image Storage series), OUT/ct.nii.gz, OUT/labels.nii.gz "
        "and OUT/phantom.json. The same seed and options give the same phantom.",
    )
    parser.add_argument("out", type=Path, help="output folder")
    add_spec_arguments(parser)
    parser.set_defaults(run=run)


def add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = PhantomSpec()
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--size",
        type=int,
        nargs=3,
        metavar=("X", "Y", "Z"),
        default=defaults.size,
        help=f"voxels (default {' '.join(map(str, defaults.size))})",
    )
    parser.add_argument(
        "--spacing",
        type=float,
        nargs=3,
        metavar=("X", "Y", "Z"),
        help="mm (default: drawn from the seed within clinical ranges)",
    )
    parser.add_argument(
        "--tumors",
        type=int,
        nargs=2,
        metavar=("MIN", "MAX"),
        default=defaults.n_tumors,
        help="number of tumors, drawn between MIN and MAX (default %(default)s)",
    )
    parser.add_argument(
        "--tumor-size",
        type=float,
        nargs=2,
        metavar=("MIN", "MAX"),
        default=defaults.tumor_diameter_mm,
        help="tumor diameter in mm (default %(default)s)",
    )
    parser.add_argument("--orientation", choices=("axial", "oblique"), default="axial")
    parser.add_argument(
        "--phase",
        choices=("native", "arterial", "portal"),
        help="contrast phase (default: drawn from the seed)",
    )


def spec_from_args(args: argparse.Namespace) -> PhantomSpec:
    return PhantomSpec(
        seed=args.seed,
        size=tuple(args.size),
        spacing=tuple(args.spacing) if args.spacing else None,
        n_tumors=tuple(args.tumors),
        tumor_diameter_mm=tuple(args.tumor_size),
        orientation=args.orientation,
        phase=args.phase,
    )


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    reporter.stage("making the phantom", 0.0)
    phantom = make_phantom(spec_from_args(args))
    files = write_phantom(phantom, args.out, progress=within(reporter.stage, 0.5, 1.0))
    size = " x ".join(map(str, phantom.ct.grid.size_ijk))
    spacing = " x ".join(f"{v:.3g}" for v in phantom.ct.spacing)
    reporter.log(
        f"Phantom seed {args.seed}: {size} voxels, {spacing} mm, {phantom.phase} phase, "
        f"{len(phantom.tumors)} tumors\n"
        f"  DICOM series  {files.dicom}  (Series UID {files.identity.series_uid})\n"
        f"  CT            {files.ct}\n"
        f"  labels        {files.labels}\n"
        f"  record        {files.record}"
    )
    reporter.result(
        dicom=files.dicom,
        ct=files.ct,
        labels=files.labels,
        record=files.record,
        series_uid=files.identity.series_uid,
    )
    return 0
