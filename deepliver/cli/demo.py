"""`deepliver demo OUT`: the README's main job, end to end on a synthetic CT series.

Make a phantom (a seed never used in training), write it as a DICOM series, find and read it
back, pre-segment it with the bundled models, write every result, and compare the result with
the phantom's own labels, which only a synthetic case can offer.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from deepliver.cli.info import format_report
from deepliver.cli.options import add_device
from deepliver.cli.segment import describe
from deepliver.errors import DeepLiverError
from deepliver.inference.cascade import segment_and_write
from deepliver.io.dicom_read import read_series
from deepliver.io.dicom_scan import scan
from deepliver.io.dicom_write import write_ct_series
from deepliver.io.image_files import write_image
from deepliver.models.predict import dice
from deepliver.phantom import PhantomSpec, make_phantom
from deepliver.progress import Reporter, within


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="the main job: synthetic CT series -> pre-segmentation -> results",
        description="Make a synthetic abdominal CT, write it as a DICOM series, read it back, "
        "pre-segment the liver and tumors with the bundled models, write the results (as "
        "`deepliver segment` does) and compare them with the phantom's true labels.",
    )
    parser.add_argument("out", type=Path, nargs="?", default=Path("demo-output"))
    parser.add_argument("--seed", type=int, default=1, help="phantom seed (0-99: never trained on)")
    add_device(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    out: Path = args.out
    dicom = out / "dicom"
    if dicom.exists() and any(dicom.iterdir()):
        raise DeepLiverError(f"{dicom}: already holds files; choose an empty output folder")
    reporter.stage("making the phantom", 0.0)
    phantom = make_phantom(PhantomSpec(seed=args.seed, size=(256, 256, 96)))
    write_ct_series(
        phantom.ct,
        dicom,
        description=f"DeepLiver demo seed {args.seed}",
        uid_entropy=f"deepliver-demo-{args.seed}",
        progress=within(reporter.stage, 0.1, 0.25),
    )
    reporter.log(
        f"Wrote a synthetic CT series ({phantom.phase} phase, {len(phantom.tumors)} tumors) "
        f"to {dicom}\n"
    )

    reporter.stage("reading DICOM", 0.25)
    reporter.log(format_report(scan(dicom)))
    start = time.perf_counter()
    ct, identity = read_series(dicom, progress=within(reporter.stage, 0.25, 0.35))
    timings = {"read": time.perf_counter() - start}
    if not np.array_equal(ct.array, phantom.ct.array):
        raise DeepLiverError(f"{dicom}: read-back voxels differ from the written ones")
    truth = write_image(ct.with_array(phantom.labels.array), out / "truth" / "labels.nii.gz")

    run = segment_and_write(
        ct,
        out / "results",
        device=args.device,
        identity=identity,
        dicom_source=dicom,
        dicom_seg=True,
        timings=timings,
        progress=within(reporter.stage, 0.35, 1.0),
    )
    paths, result = run.paths, run.result

    found, true = result.labels.array, phantom.labels.array
    liver, tumor = dice(found > 0, true > 0), dice(found == 2, true == 2)
    reporter.log(
        "\n"
        + describe(paths["summary"], result.notes, run.device)
        + f"\nAgainst the phantom's true labels ({truth}): liver Dice {liver:.3f}, "
        f"tumor Dice {tumor:.3f}"
    )
    reporter.result(truth=truth, **paths)
    return 0
