"""`deepliver info PATH`: every image series under a folder, and every problem met."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from deepliver.io.dicom_scan import ScanReport, SeriesInfo, scan
from deepliver.io.image_files import is_image_file, read_image
from deepliver.progress import Reporter
from deepliver.volume import Volume, orientation_name


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "info",
        help="list the image series under a folder or in a file, with their problems",
        description="Walk PATH (a folder tree, a DICOM file, or a NIfTI/NRRD file) and list "
        "every image series: UIDs, modality, description, size, spacing, orientation, number "
        "of files, and every problem found. Bad files are reported, never fatal.",
    )
    parser.add_argument("path", type=Path)
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    reporter.stage(f"reading {args.path.name}")
    if is_image_file(args.path):
        volume = read_image(args.path)
        record = image_record(args.path, volume)
        text = format_image(args.path, volume)
    else:
        report = scan(args.path)
        record = report_record(report)
        text = format_report(report)
    reporter.log(json.dumps(record, indent=2) if args.json else text)
    reporter.result(**record)
    return 0


def series_record(info: SeriesInfo) -> dict:
    return {
        "series": info.key,
        "patient_id": info.patient_id,
        "study_instance_uid": info.study_uid,
        "series_instance_uid": info.series_uid,
        "modality": info.modality,
        "description": info.description,
        "size": list(info.size),
        "spacing": [round(v, 6) for v in info.spacing],
        "origin": [round(v, 6) for v in info.origin],
        "direction": [round(v, 6) for v in info.direction],
        "orientation": orientation_name(np.reshape(info.direction, (3, 3))),
        "files": info.n_files,
        "problems": [{"kind": p.kind, "message": p.message} for p in info.problems],
    }


def report_record(report: ScanReport) -> dict:
    return {
        "series": [series_record(info) for info in report.series],
        "unused_files": [
            {"kind": p.kind, "message": p.message, "path": str(p.path)} for p in report.unused_files
        ],
    }


def image_record(path: Path, volume: Volume) -> dict:
    return {
        "file": str(path),
        "size": list(volume.grid.size_ijk),
        "type": str(volume.array.dtype),
        "spacing": [round(float(v), 6) for v in volume.spacing],
        "origin": [round(float(v), 6) for v in volume.origin],
        "direction": [round(float(v), 6) for v in volume.direction.ravel()],
        "orientation": orientation_name(volume.direction),
    }


def format_report(report: ScanReport) -> str:
    lines = [f"{len(report.series)} image series found"]
    for number, info in enumerate(report.series, start=1):
        record = series_record(info)
        lines += [
            "",
            f"[{number}] Series {info.key}",
            f"    Patient ID     {info.patient_id or '(empty)'}",
            f"    Study UID      {info.study_uid}",
            f"    Modality       {info.modality or '(empty)'}",
            f"    Description    {info.description or '(empty)'}",
            f"    Size           {' x '.join(map(str, info.size))} (x, y, z), {info.n_files} files",
            f"    Spacing        {' x '.join(f'{v:.4g}' for v in info.spacing)} mm",
            f"    Orientation    {record['orientation']}, direction "
            f"{_direction_text(info.direction)}",
            f"    Origin         {', '.join(f'{v:.2f}' for v in info.origin)} mm (LPS)",
        ]
        lines += [f"    Problem        {p.message}" for p in info.problems] or [
            "    Problems       none"
        ]
    if report.unused_files:
        lines += ["", f"{len(report.unused_files)} files not used:"]
        lines += [f"    {p.message}" for p in report.unused_files]
    return "\n".join(lines)


def format_image(path: Path, volume: Volume) -> str:
    record = image_record(path, volume)
    return "\n".join(
        [
            f"Image file {path}",
            f"    Size           {' x '.join(map(str, record['size']))} (x, y, z), "
            f"{record['type']}",
            f"    Spacing        {' x '.join(f'{v:.4g}' for v in record['spacing'])} mm",
            f"    Orientation    {record['orientation']}, direction "
            f"{_direction_text(record['direction'])}",
            f"    Origin         {', '.join(f'{v:.2f}' for v in record['origin'])} mm (LPS)",
        ]
    )


def _direction_text(direction) -> str:
    columns = np.reshape(direction, (3, 3)).T
    return " / ".join("(" + ", ".join(f"{v:.3f}" for v in axis) + ")" for axis in columns)
