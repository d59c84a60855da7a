"""`deepliver convert PATH OUT`: one series as NIfTI or NRRD, with its exact geometry."""

from __future__ import annotations

import argparse
from pathlib import Path

from deepliver.io.image_files import WRITE_SUFFIXES, write_image
from deepliver.io.load import load_volume
from deepliver.progress import Reporter, within


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="write one series as NIfTI (.nii.gz) or NRRD (.nrrd)",
        description="Read one image series (a DICOM folder or file, or a NIfTI/NRRD file) and "
        f"write it with its exact geometry; the output type follows OUT's suffix "
        f"({', '.join(WRITE_SUFFIXES)}).",
    )
    parser.add_argument("path", type=Path, help="DICOM folder or file, NIfTI or NRRD file")
    parser.add_argument("out", type=Path, help="output file, e.g. ct.nii.gz or ct.nrrd")
    parser.add_argument("--series", metavar="UID", help="Series Instance UID to convert")
    parser.add_argument(
        "--allow-gaps", action="store_true", help="read a series with missing slices"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    reporter.stage("reading", 0.0)
    progress = within(reporter.stage, 0.0, 0.7)
    volume, identity = load_volume(args.path, args.series, args.allow_gaps, progress)
    reporter.stage(f"writing {args.out.name}", 0.7)
    write_image(volume, args.out)
    source = f"series {identity.series_uid}" if identity and identity.series_uid else args.path
    size = " x ".join(map(str, volume.grid.size_ijk))
    spacing = " x ".join(f"{v:.4g}" for v in volume.spacing)
    reporter.log(f"Wrote {args.out}: {source}, {size} voxels, {spacing} mm, {volume.array.dtype}")
    reporter.result(image=args.out, series_uid=identity.series_uid if identity else None)
    return 0
