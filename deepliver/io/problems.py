"""What can be wrong with a file or a series, as found while scanning DICOM files.

A :class:`Problem` never stops a scan: it is collected so that a radiologist sees every
unreadable file, skipped object and doubtful series, each named in its message.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Problem kinds.
NOT_DICOM = "not_dicom"
UNREADABLE = "unreadable"
TRUNCATED = "truncated"
NON_IMAGE = "non_image"
SPLIT_SERIES = "split_series"
MISSING_SLICES = "missing_slices"
UNEVEN_SPACING = "uneven_spacing"
DUPLICATE_SLICES = "duplicate_slices"
SHEARED = "sheared"
MISSING_UIDS = "missing_uids"
# Kinds that concern one file that was left out, not a series.
FILE_KINDS = {NOT_DICOM, UNREADABLE, TRUNCATED, NON_IMAGE}
# Kinds that keep a stack from being read onto a regular grid.
BLOCKING_KINDS = {UNEVEN_SPACING, SHEARED}


@dataclass(frozen=True)
class Problem:
    """Something wrong or skipped; ``message`` names the file or series it concerns."""

    kind: str
    message: str
    path: Path | None = None
