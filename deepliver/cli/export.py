"""`deepliver export --store S --dicom D -o DATASET`: the store as a de-identified training set."""

from __future__ import annotations

import argparse
from pathlib import Path

from deepliver.progress import Reporter, within


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write the annotated series as a de-identified dataset (Decathlon layout)",
        description="Write every series of the annotation store STORE with a finished reader "
        "revision, and its DICOM series from D, as a de-identified dataset in the Medical "
        "Segmentation Decathlon layout: imagesTr/labelsTr, imagesTs/labelsTs, dataset.json "
        "and manifest.json. Cases are named liver_<pseudonym> (an HMAC of the Series Instance "
        "UID with a secret key); no name, ID, date or UID is written into the dataset. The "
        "pseudonym -> patient mapping goes to a file beside it. Running it again writes only "
        "what changed.",
    )
    parser.add_argument("--store", type=Path, required=True, help="the annotation store folder")
    parser.add_argument(
        "--dicom",
        type=Path,
        required=True,
        metavar="D",
        help="folder tree holding the DICOM files of the series (found by Series Instance UID)",
    )
    parser.add_argument(
        "-o", "--out", type=Path, required=True, metavar="DATASET", help="the dataset folder"
    )
    parser.add_argument(
        "--status",
        choices=("approved", "complete", "any"),
        default="complete",
        help="complete (default): revisions marked complete or approved; approved: approved "
        "only; any: the newest reader revision, drafts included",
    )
    parser.add_argument(
        "--test-fraction",
        type=float,
        default=0.2,
        metavar="F",
        help="share of patients in the test set (default %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the patient split")
    parser.add_argument(
        "--key-file",
        type=Path,
        default=None,
        metavar="PATH",
        help="secret key of the pseudonyms (default ~/.deepliver/export-key, made when missing)",
    )
    parser.add_argument(
        "--mapping",
        type=Path,
        default=None,
        metavar="PATH",
        help="where the pseudonym -> patient mapping goes (default DATASET.mapping.json, "
        "beside the dataset; never inside it)",
    )
    parser.add_argument(
        "--accept-changed",
        action="store_true",
        help="export series whose DICOM files changed since they were annotated",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    from deepliver.annotation.store import AnnotationStore
    from deepliver.errors import DeepLiverError
    from deepliver.export.msd import (
        ExportSettings,
        default_mapping,
        export_dataset,
        is_inside,
        select_series,
    )
    from deepliver.export.pseudonyms import DEFAULT_KEY_FILE, Pseudonyms, load_or_create_key
    from deepliver.io.dicom_scan import scan

    settings = ExportSettings(args.status, args.test_fraction, args.seed, args.accept_changed)
    key_file = (args.key_file or DEFAULT_KEY_FILE).expanduser()
    mapping = args.mapping or default_mapping(args.out)
    if is_inside(key_file, args.out):
        raise DeepLiverError(f"{key_file}: the key must not lie inside the dataset {args.out}")

    store = AnnotationStore(args.store)
    reporter.stage(f"reading {args.store}", 0.0)
    selected, notes = select_series(store, settings.status)
    for note in notes:
        reporter.log(f"Note: {note}")
    reporter.stage(f"scanning {args.dicom}", 0.05)
    report = scan(args.dicom)
    key, created = load_or_create_key(key_file)
    if created:
        reporter.log(f"Made a new export key in {key_file}: keep it to keep the same case names")
    result = export_dataset(
        store,
        selected,
        report,
        args.dicom,
        args.out,
        mapping,
        Pseudonyms(key),
        settings,
        log=reporter.log,
        progress=within(reporter.stage, 0.1, 1.0),
    )
    for note in result.notes:
        reporter.log(f"Note: {note}")
    reporter.log(
        f"Wrote {result.dataset}: {len(result.training)} training and {len(result.test)} test "
        f"case(s); {len(result.written)} written, {len(result.unchanged)} unchanged, "
        f"{len(result.removed)} removed."
    )
    reporter.log(
        f"The pseudonym -> patient mapping is in {result.mapping}: it names patients, keep it "
        "apart from the dataset."
    )
    reporter.result(
        dataset=result.dataset,
        mapping=result.mapping,
        training=result.training,
        test=result.test,
        written=result.written,
        unchanged=result.unchanged,
        removed=result.removed,
    )
    return 0
