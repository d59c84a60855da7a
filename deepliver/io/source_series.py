"""The image series a segmentation was drawn on, found from headers only (no pixel data).

A DICOM SEG must reference the exact slices under its frames, so this module gives, for a
folder or a list of files, the stack's slices in order along the slice normal and its grid
(the same grid :func:`deepliver.io.dicom_read.read_series` would give) without reading voxels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepliver.errors import DeepLiverError
from deepliver.io.dicom_read import choose_series
from deepliver.io.dicom_scan import DUPLICATE_TOLERANCE_MM, SeriesInfo, scan, scan_files
from deepliver.io.problems import BLOCKING_KINDS
from deepliver.volume import Grid

Source = Path | str | Sequence[Path | str]


@dataclass(frozen=True, eq=False)
class SourceSeries:
    """One stack of slices, sorted along its normal, with its grid."""

    info: SeriesInfo
    grid: Grid

    @property
    def files(self) -> list[Path]:
        return self.info.files

    @property
    def sop_uids(self) -> list[str]:
        return [h.sop_uid for h in self.info.slices]


def stack_grid(info: SeriesInfo) -> Grid:
    """The regular grid of a stack; refuses one that cannot be a volume slice for slice."""
    blocking = [p for p in info.problems if p.kind in BLOCKING_KINDS]
    if blocking:
        raise DeepLiverError(f"{info.describe()} is not a regular volume: {blocking[0].message}")
    if info.missing_positions:
        raise DeepLiverError(
            f"{info.describe()} has {len(info.missing_positions)} missing slice(s); a segmentation"
            " cannot reference slices that are not there"
        )
    steps = np.diff([h.along_normal for h in info.slices])
    if np.any(np.abs(steps) <= DUPLICATE_TOLERANCE_MM):
        raise DeepLiverError(f"{info.describe()} has two files at one slice position")
    columns, rows, count = info.size
    direction = np.reshape(info.direction, (3, 3))
    return Grid((count, rows, columns), info.origin, info.spacing, direction)


def source_series(source: Source, series_uid: str | None = None) -> SourceSeries:
    """The stack under a folder, in one file, or made of a list of files.

    ``series_uid`` picks the stack when there are several, and must exist when given.
    """
    if isinstance(source, (str, Path)):
        report = scan(source)
        where = str(source)
    else:
        files = [Path(f) for f in source]
        if not files:
            raise DeepLiverError("no source image files given")
        report = scan_files(files)
        where = f"{len(files)} files in {files[0].parent}"
    info = choose_series(report, where, series_uid)
    return SourceSeries(info, stack_grid(info))
