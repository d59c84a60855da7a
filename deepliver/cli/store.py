"""`deepliver store list|show|export`: what an annotation store holds, and its labels as files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from deepliver.annotation.record import MANUAL, MODEL, STATUSES, Revision
from deepliver.annotation.store import AnnotationStore, SeriesStatus, StoreProblem
from deepliver.errors import DeepLiverError
from deepliver.io.series_identity import SeriesIdentity
from deepliver.progress import MODES, Reporter

FORMATS = ("nifti", "seg-nrrd", "dicom-seg")
NIFTI_SUFFIXES = (".nii.gz", ".nii")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "store",
        help="list, show and export the annotations in an annotation store",
        description="An annotation store is one folder holding, for every annotated series "
        "(by Study and Series Instance UID), its identity and every saved revision of its "
        "labels (.seg.nrrd plus a JSON record).",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser(
        "list",
        help="every series with its status and number of revisions",
        description="List every series in STORE: patient, study, series, description, status "
        "(not started, draft, complete, approved: from the latest reader revision) and "
        "revisions. Records that cannot be read are listed as problems.",
    )
    listing.add_argument("store", type=Path, help="the annotation store folder")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(run=run_list)

    show = actions.add_parser(
        "show",
        help="one series: identity, grid, history, and one revision's segments and boxes",
        description="Show series SERIES of STORE: its identity and grid, every revision (the "
        "history), and the segments and lesion boxes of one revision (the newest by default).",
    )
    show.add_argument("store", type=Path, help="the annotation store folder")
    show.add_argument("series", help="Series Instance UID (or the scan's key, UID#2)")
    show.add_argument("--revision", type=int, metavar="N", help="revision to detail")
    show.add_argument("--json", action="store_true", help="print JSON instead of text")
    show.set_defaults(run=run_show)

    export = actions.add_parser(
        "export",
        help="write one revision as NIfTI, .seg.nrrd or DICOM SEG",
        description="Write one revision of series SERIES (by default the newest reader "
        "revision) as a NIfTI label map (0 background, 1 liver, 2 tumor), a Slicer .seg.nrrd, "
        "or a DICOM SEG (which needs the source series folder, --dicom). With --dicom the "
        "series on disk is checked against the store: changed files are refused.",
    )
    export.add_argument("store", type=Path, help="the annotation store folder")
    export.add_argument("series", help="Series Instance UID (or the scan's key, UID#2)")
    export.add_argument("-o", "--out", type=Path, required=True, help="output file")
    export.add_argument("--format", choices=FORMATS, required=True)
    export.add_argument("--revision", type=int, metavar="N", help="revision to export")
    export.add_argument(
        "--source",
        choices=(MANUAL, MODEL, "any"),
        default=MANUAL,
        help="without --revision: the newest revision of this source (default manual)",
    )
    export.add_argument("--dicom", type=Path, metavar="FOLDER", help="the source DICOM series")
    export.set_defaults(run=run_export)

    add = actions.add_parser(
        "add",
        help="save labels drawn elsewhere (or a model's) as a new revision of a DICOM series",
        description="Save LABELS (a NIfTI/NRRD label map with 0 background, 1 liver, 2 tumor; "
        "a .seg.nrrd; or a DICOM SEG) as a new revision of the series in DICOM folder SERIES. "
        "The labels must lie on the exact grid of the series; nothing is resampled.",
    )
    add.add_argument("store", type=Path, help="the annotation store folder")
    add.add_argument("dicom", type=Path, help="the DICOM folder of the series")
    add.add_argument("labels", type=Path, help="label map, .seg.nrrd or DICOM SEG")
    add.add_argument("--reader", required=True, help="who drew the labels (or ran the model)")
    add.add_argument("--status", choices=STATUSES, default="draft")
    add.add_argument("--series", metavar="UID", help="the series, when the folder holds several")
    add.add_argument(
        "--model", nargs=2, metavar=("NAME", "VERSION"), help="the labels are a model's output"
    )
    add.add_argument("--comment", default="")
    add.set_defaults(run=run_add)

    for action in actions.choices.values():  # `deepliver store list S --progress jsonl` too
        action.add_argument("--progress", choices=MODES, default=argparse.SUPPRESS)


# --- list ------------------------------------------------------------------------------------


def _printable(text: str, width: int | None = None) -> str:
    text = "".join(c if c.isprintable() else "?" for c in text)
    if width is not None and len(text) > width:
        text = text[: width - 3] + "..."
    return text


def status_record(status: SeriesStatus) -> dict:
    identity = status.identity
    return {
        "series": status.series_key,
        "patient_id": identity.patient_id,
        "study_instance_uid": identity.study_uid,
        "series_instance_uid": identity.series_uid,
        "modality": identity.modality,
        "description": identity.description,
        "status": status.status,
        "revisions": status.revisions,
        "reader_revisions": status.reader_revisions,
        "has_model": status.has_model,
        "latest_revision": status.latest_number,
        "latest_time": status.latest_time,
        "latest_reader": status.latest_reader,
        "fingerprint": identity.fingerprint,
    }


def problem_record(problem: StoreProblem) -> dict:
    return {"path": str(problem.path), "message": problem.message}


def format_table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    return [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


def run_list(args: argparse.Namespace, reporter: Reporter) -> int:
    reporter.stage(f"reading {args.store}")
    listing = AnnotationStore(args.store).listing()
    series = [status_record(s) for s in listing.series]
    problems = [problem_record(p) for p in listing.problems]
    if args.json:
        reporter.log(json.dumps({"series": series, "problems": problems}, indent=2))
    else:
        header = ["PATIENT", "STUDY", "SERIES", "DESCRIPTION", "STATUS", "REVISIONS"]
        rows = [header]
        for s in listing.series:
            count = str(s.revisions) + (
                f" ({s.revisions - s.reader_revisions} model)" * s.has_model
            )
            rows.append(
                [
                    _printable(s.identity.patient_id, 24) or "-",
                    s.identity.study_uid or "-",
                    s.series_key,
                    _printable(s.identity.description, 32) or "-",
                    s.status,
                    count,
                ]
            )
        lines = [f"{len(listing.series)} series in {args.store}"]
        if listing.series:
            lines += [""] + format_table(rows)
        if listing.problems:
            lines += ["", f"{len(listing.problems)} record(s) could not be read:"]
            lines += [f"    {_printable(p.message)}" for p in listing.problems]
        reporter.log("\n".join(lines))
    reporter.result(series=series, problems=problems)
    return 0


# --- show ------------------------------------------------------------------------------------


def revision_record(revision: Revision) -> dict:
    data = revision.to_dict()
    data["sidecar"] = str(revision.sidecar)
    return data


def run_show(args: argparse.Namespace, reporter: Reporter) -> int:
    store = AnnotationStore(args.store)
    reporter.stage(f"reading {args.series}")
    record = store.series_record(args.series)
    status = store.status(args.series)
    revisions = store.revisions(args.series)
    if args.revision is not None:
        chosen = store.revision(args.series, args.revision)
    else:
        chosen = store.latest(args.series, source=None)
    result = {
        "series": status_record(status),
        "identity": record.identity.to_dict(),
        "geometry": record.to_dict()["geometry"],
        "history": [
            {
                "number": r.number,
                "created": r.created,
                "reader": r.reader,
                "status": r.status,
                "source": r.source.to_dict(),
                "segments": len(r.segments),
                "comment": r.comment,
            }
            for r in revisions
        ],
        "revision": revision_record(chosen) if chosen else None,
        "problems": [problem_record(p) for p in status.problems],
    }
    reporter.log(json.dumps(result, indent=2) if args.json else format_show(result, record))
    reporter.result(**result)
    return 0


def format_show(result: dict, record) -> str:
    identity, geometry = result["identity"], result["geometry"]
    lines = [
        f"Series {result['series']['series']}",
        f"    Patient ID     {_printable(identity['patient_id']) or '(empty)'}",
        f"    Study UID      {identity['study_uid'] or '(empty)'}",
        f"    Modality       {identity['modality'] or '(empty)'}",
        f"    Description    {_printable(identity['description']) or '(empty)'}",
        f"    Status         {result['series']['status']}",
        f"    Size           {' x '.join(map(str, geometry['size']))} (x, y, z), "
        f"{len(identity['sop_uids'])} slices",
        f"    Spacing        {' x '.join(f'{v:.4g}' for v in geometry['spacing'])} mm",
        f"    Origin         {', '.join(f'{v:.2f}' for v in geometry['origin'])} mm (LPS)",
        f"    Fingerprint    {identity['fingerprint']}",
        "",
        "History",
    ]
    rows = [["REV", "CREATED (UTC)", "READER", "STATUS", "SOURCE", "SEGMENTS", "COMMENT"]]
    for h in result["history"]:
        source = h["source"]
        source_text = (
            "manual" if source["kind"] == MANUAL else f"{source['name']} {source['version']}"
        )
        rows.append(
            [
                str(h["number"]),
                h["created"],
                _printable(h["reader"], 24),
                h["status"],
                _printable(source_text, 24),
                str(h["segments"]),
                _printable(h["comment"], 40),
            ]
        )
    lines += ["    " + line for line in format_table(rows)] if result["history"] else ["    none"]
    revision = result["revision"]
    if revision:
        lines += ["", f"Revision {revision['number']} ({revision['sidecar']})"]
        lines += ["    Segments"]
        for s in revision["segments"]:
            lines.append(
                f"        {_printable(s['name'])}: {s['structure']}, label {s['label']}, "
                f"colour {tuple(s['color'])}"
            )
        lines += ["    Lesion boxes (LPS mm)" if revision["boxes"] else "    Lesion boxes   none"]
        for b in revision["boxes"]:
            low = ", ".join(f"{v:.1f}" for v in b["min"])
            high = ", ".join(f"{v:.1f}" for v in b["max"])
            lines.append(f"        {_printable(b['segment'])}: ({low}) to ({high})")
    for p in result["problems"]:
        lines.append(f"    Problem        {_printable(p['message'])}")
    return "\n".join(lines)


# --- add ------------------------------------------------------------------------------------


def run_add(args: argparse.Namespace, reporter: Reporter) -> int:
    from deepliver.io.dicom_read import read_series
    from deepliver.io.load import load_segmentation

    reporter.stage(f"reading {args.dicom}", 0.0)
    volume, identity = read_series(args.dicom, args.series)
    reporter.stage(f"reading {args.labels.name}", 0.4)
    segmentation = load_segmentation(args.labels, args.dicom)
    volume.require_same_grid(segmentation.grid, what=f"{args.labels}")
    source = (
        {"kind": MODEL, "name": args.model[0], "version": args.model[1]} if args.model else None
    )
    reporter.stage("saving", 0.7)
    revision = AnnotationStore(args.store).save(
        identity,
        volume.grid,
        segmentation,
        reader=args.reader,
        status=args.status,
        source=source,
        comment=args.comment,
        series_key=args.series,
    )
    reporter.log(
        f"Saved revision {revision.number} of series {revision.series_key} ({revision.status}, "
        f"{revision.source.describe()}): {', '.join(s.name for s in segmentation.segments)}"
    )
    reporter.result(series=revision.series_key, revision=revision.number, sidecar=revision.sidecar)
    return 0


# --- export ----------------------------------------------------------------------------------


def _identity_on_disk(folder: Path, series_key: str) -> SeriesIdentity:
    from deepliver.io.source_series import source_series

    stack = source_series(folder, series_key)
    info = stack.info
    return SeriesIdentity.build(
        patient_id=info.patient_id,
        study_uid=info.study_uid,
        series_uid=info.series_uid,
        modality=info.modality,
        description=info.description,
        sop_uids=stack.sop_uids,
        grid=stack.grid,
    )


def run_export(args: argparse.Namespace, reporter: Reporter) -> int:
    out: Path = args.out
    if args.format == "nifti" and not out.name.lower().endswith(NIFTI_SUFFIXES):
        raise DeepLiverError(f"{out}: a NIfTI file must end with .nii.gz or .nii")
    if args.format == "seg-nrrd" and not out.name.lower().endswith(".seg.nrrd"):
        raise DeepLiverError(f"{out}: a Slicer segmentation file must end with .seg.nrrd")
    if args.format == "dicom-seg" and args.dicom is None:
        raise DeepLiverError("--format dicom-seg needs the source series folder: --dicom FOLDER")

    store = AnnotationStore(args.store)
    reporter.stage(f"reading {args.series}", 0.0)
    record = store.series_record(args.series)
    if args.revision is not None:
        revision = store.revision(args.series, args.revision)
    else:
        source = None if args.source == "any" else args.source
        revision = store.latest(args.series, source=source)
        if revision is None:
            raise DeepLiverError(
                f"series {args.series} has no {args.source} revision; name one with --revision N"
                " or choose --source any"
            )
    on_disk = None
    if args.dicom is not None:
        reporter.stage(f"checking {args.dicom}", 0.1)
        on_disk = _identity_on_disk(args.dicom, args.series)
    reporter.stage(f"loading revision {revision.number}", 0.3)
    segmentation = store.load(revision, on_disk)

    reporter.stage(f"writing {out.name}", 0.6)
    if args.format == "nifti":
        from deepliver.io.image_files import write_image

        write_image(segmentation.label_map(), out)
    elif args.format == "seg-nrrd":
        from deepliver.io.seg_nrrd import write_seg_nrrd

        write_seg_nrrd(segmentation, out)
    else:
        from deepliver.io.dicom_seg import write_dicom_seg

        source = revision.source
        write_dicom_seg(
            segmentation,
            args.dicom,
            out,
            series_identity=record.identity,
            algorithm=(source.name, source.version) if source.is_model else None,
        )
    reporter.log(
        f"Wrote {out}: revision {revision.number} of series {args.series} "
        f"({revision.status}, {revision.source.describe()}, by {_printable(revision.reader)}), "
        f"{len(segmentation.segments)} segment(s), {args.format}"
    )
    reporter.result(
        output=out,
        format=args.format,
        series=args.series,
        revision=revision.number,
        status=revision.status,
    )
    return 0
