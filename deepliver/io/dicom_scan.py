"""Find every image series under a folder (or in one file) without stopping at a bad file.

Only headers are read (:mod:`deepliver.io.dicom_header`). Files are grouped by Series Instance
UID; a UID that holds several stacks (another Image Orientation, matrix size or pixel spacing)
is split, the largest stack keeping the key ``SERIESUID`` and the others getting
``SERIESUID#2``, ``SERIESUID#3``, ... Within a stack, files are sorted by their position along
the slice normal, never by file name or Instance Number. What a radiologist must know about
(unreadable files, missing, duplicate or unevenly spaced slices, split series, non-image
objects that were skipped) becomes a :class:`Problem` whose message names the file or series.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deepliver.errors import DeepLiverError
from deepliver.io.dicom_header import SliceHeader, read_header, read_series_uid, slice_directions
from deepliver.io.problems import (
    DUPLICATE_SLICES,
    FILE_KINDS,
    MISSING_SLICES,
    MISSING_UIDS,
    NON_IMAGE,
    SHEARED,
    SPLIT_SERIES,
    TRUNCATED,
    UNEVEN_SPACING,
    Problem,
)
from deepliver.io.series_identity import missing_uids

# Two slices closer than this along the normal are the same slice position (mm).
DUPLICATE_TOLERANCE_MM = 1e-3
# A slice step may differ from the nominal spacing by this fraction and still be "even".
SPACING_TOLERANCE = 0.01
# In-plane drift of slice positions beyond this means the stack is sheared (gantry tilt), mm.
SHEAR_TOLERANCE_MM = 0.01


@dataclass(eq=False)
class SeriesInfo:
    """One stack of image slices that can form a volume."""

    key: str  # SERIESUID, or SERIESUID#2, #3, ... for extra stacks under the same UID
    patient_id: str
    study_uid: str
    series_uid: str
    modality: str
    description: str
    size: tuple[int, int, int]  # (columns, rows, distinct slice positions present)
    spacing: tuple[float, float, float]  # (x, y, z); z measured along the slice normal
    origin: tuple[float, float, float]  # position of the first slice, LPS mm
    direction: tuple[float, ...]  # 3x3 row-major, columns = row, column and normal cosines
    n_files: int
    slices: list[SliceHeader]  # sorted along the slice normal; duplicates stay adjacent
    problems: list[Problem] = field(default_factory=list)
    missing_positions: list[float] = field(default_factory=list)  # mm along the normal

    @property
    def files(self) -> list[Path]:
        return [s.path for s in self.slices]

    @property
    def normal(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=np.float64).reshape(3, 3)[:, 2]

    def describe(self) -> str:
        """One line for listings and error messages."""
        cols, rows, n = self.size
        text = f"{self.key} ({self.modality}, {cols}x{rows}x{n}"
        return text + (f", '{self.description}')" if self.description else ")")


@dataclass(eq=False)
class ScanReport:
    """Every image stack found, and every problem met on the way."""

    series: list[SeriesInfo]
    problems: list[Problem]

    @property
    def skipped(self) -> list[Problem]:
        """Non-image DICOM objects (SEG, SR, ...) that were not treated as series."""
        return [p for p in self.problems if p.kind == NON_IMAGE]

    @property
    def unused_files(self) -> list[Problem]:
        """Files left out of every series: not DICOM, damaged, or not an image."""
        return [p for p in self.problems if p.kind in FILE_KINDS]

    def find(self, key: str) -> SeriesInfo | None:
        return next((s for s in self.series if s.key == key), None)


def scan(path: Path | str) -> ScanReport:
    """Headers of every file under ``path`` grouped into image stacks, with all problems met."""
    root = Path(path)
    if not root.exists():
        raise DeepLiverError(f"{root}: no such file or folder")
    return scan_files(_files_under(root))


def scan_files(files: list[Path]) -> ScanReport:
    """Like :func:`scan`, for a list of files chosen by the caller (one series' slices, say)."""
    by_series, problems, damaged = _read_headers([Path(f) for f in files])
    series = []
    for uid in sorted(by_series):
        for stack in _stacks_of_series(uid, by_series[uid]):
            stack.problems.extend(_missing_uid_problems(stack))
            problems.extend(stack.problems)
            # Damaged files are already in the report's problems; the series hears of them too.
            stack.problems.extend(damaged.get(uid, []))
            series.append(stack)
    return ScanReport(series=series, problems=problems)


# --- walking and reading ------------------------------------------------------------------


def _files_under(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    found = []
    for folder, subfolders, names in os.walk(root):
        subfolders.sort()
        found.extend(Path(folder) / name for name in sorted(names))
    return found


def _read_headers(
    files: list[Path],
) -> tuple[dict[str, list[SliceHeader]], list[Problem], dict[str, list[Problem]]]:
    """(headers by series key, problems of files left out, truncated files by series UID)."""
    by_series: dict[str, list[SliceHeader]] = defaultdict(list)
    problems: list[Problem] = []
    damaged: dict[str, list[Problem]] = defaultdict(list)
    for file in files:
        result = read_header(file)
        if isinstance(result, Problem):
            problems.append(result)
            if result.kind == TRUNCATED:
                uid = read_series_uid(file)
                if uid:
                    damaged[uid].append(result)
        else:
            by_series[result.series_uid or _stand_in_key(file)].append(result)
    return by_series, problems, damaged


def _stand_in_key(path: Path) -> str:
    """A key for files without a Series Instance UID (de-identified too far): one per folder."""
    digest = hashlib.sha1(str(path.parent.resolve()).encode("utf-8")).hexdigest()[:12]
    return f"NO-SERIES-UID-{digest}"


# --- splitting one series into stacks -----------------------------------------------------


def _stack_key(header: SliceHeader) -> tuple:
    """What slices of one stack share: orientation, matrix size and pixel spacing."""
    return (
        tuple(round(v, 4) for v in header.orientation),
        header.rows,
        header.columns,
        tuple(round(v, 4) for v in header.pixel_spacing),
    )


def _stacks_of_series(series_uid: str, headers: list[SliceHeader]) -> list[SeriesInfo]:
    """The stacks under one Series UID, largest first; each is told when the UID was split."""
    groups: dict[tuple, list[SliceHeader]] = defaultdict(list)
    for h in headers:
        groups[_stack_key(h)].append(h)
    ordered = sorted(groups.values(), key=lambda g: (-len(g), str(min(h.path for h in g))))
    stacks = []
    for number, group in enumerate(ordered, start=1):
        key = series_uid if number == 1 else f"{series_uid}#{number}"
        stack = _build_stack(key, group)
        if len(ordered) > 1:
            stack.problems.insert(
                0,
                Problem(
                    SPLIT_SERIES,
                    f"series {series_uid} mixes {len(ordered)} stacks (different orientation, "
                    f"size or pixel spacing); this one is {key} with {len(group)} file(s)",
                ),
            )
        stacks.append(stack)
    return stacks


# --- one stack: order, duplicates, spacing, gaps, shear -----------------------------------


def _build_stack(key: str, headers: list[SliceHeader]) -> SeriesInfo:
    """One stack: its slices in order along the normal, its grid, and what is wrong with it."""
    label = f"series {key}"
    first = headers[0]
    direction = slice_directions(first.orientation)
    slices = sorted(headers, key=lambda h: (h.along_normal, str(h.path)))
    distinct, problems = _find_duplicates(slices, label)
    spacing_z, missing = 1.0, []
    if len(distinct) > 1:
        positions = np.array([h.along_normal for h in distinct])
        spacing_z, missing, spacing_problems = _measure_spacing(positions, label)
        problems += spacing_problems + _detect_shear(distinct, direction[:, 2], label)
    return SeriesInfo(
        key=key,
        patient_id=first.patient_id,
        study_uid=first.study_uid,
        series_uid=first.series_uid,
        modality=first.modality,
        description=first.description,
        size=(first.columns, first.rows, len(distinct)),
        spacing=(first.pixel_spacing[1], first.pixel_spacing[0], float(spacing_z)),
        origin=tuple(float(v) for v in distinct[0].position),
        direction=tuple(float(v) for v in direction.reshape(-1)),
        n_files=len(slices),
        slices=slices,
        problems=problems,
        missing_positions=missing,
    )


def _find_duplicates(
    slices: list[SliceHeader], label: str
) -> tuple[list[SliceHeader], list[Problem]]:
    """One slice per position (the first in sort order), and a Problem naming the others."""
    distinct: list[SliceHeader] = []
    duplicates: list[str] = []
    for h in slices:
        if distinct and abs(h.along_normal - distinct[-1].along_normal) <= DUPLICATE_TOLERANCE_MM:
            duplicates.append(f"{h.path.name} at {h.along_normal:.3f} mm")
        else:
            distinct.append(h)
    if not duplicates:
        return distinct, []
    shown = ", ".join(duplicates[:5]) + (" ..." if len(duplicates) > 5 else "")
    message = f"{label}: {len(duplicates)} duplicate slice(s) at the same position: {shown}"
    return distinct, [Problem(DUPLICATE_SLICES, message)]


def _measure_spacing(positions: np.ndarray, label: str) -> tuple[float, list[float], list[Problem]]:
    """(slice spacing, positions of missing slices, problems) of sorted distinct positions.

    The median step is the nominal spacing. Steps that are whole multiples of it are gaps
    (missing slices); any other step makes the spacing uneven, and then no gap is inferred.
    """
    steps = np.diff(positions)
    nominal = float(np.median(steps))
    multiples = np.rint(steps / nominal)
    if np.any(np.abs(steps - multiples * nominal) > SPACING_TOLERANCE * nominal):
        message = (
            f"{label}: uneven slice spacing (steps {np.round(np.unique(steps), 3).tolist()}"
            f" mm, nominal {nominal:.3f} mm)"
        )
        return nominal, [], [Problem(UNEVEN_SPACING, message)]
    spacing = (positions[-1] - positions[0]) / float(multiples.sum())
    missing = [
        round(float(positions[index] + step * spacing), 3)
        for index in np.flatnonzero(multiples > 1)
        for step in range(1, int(multiples[index]))
    ]
    if not missing:
        return spacing, [], []
    shown = ", ".join(f"{p:.3f}" for p in missing[:10]) + (" ..." if len(missing) > 10 else "")
    message = f"{label}: {len(missing)} missing slice(s) at {shown} mm along the normal"
    return spacing, missing, [Problem(MISSING_SLICES, message)]


def _detect_shear(distinct: list[SliceHeader], normal: np.ndarray, label: str) -> list[Problem]:
    """A Problem when slice positions drift in-plane instead of lying on one line."""
    offsets = np.array([h.position for h in distinct]) - distinct[0].position
    drift = offsets - np.outer(offsets @ normal, normal)
    if np.max(np.linalg.norm(drift, axis=1)) > SHEAR_TOLERANCE_MM:
        return [Problem(SHEARED, f"{label}: slice positions drift in-plane (gantry tilt or shear)")]
    return []


# --- identity checks ----------------------------------------------------------------------


def _missing_uid_problems(stack: SeriesInfo) -> list[Problem]:
    """A Problem when UIDs are missing, since the series identity then rests on geometry."""
    missing = missing_uids(stack.study_uid, stack.series_uid, [h.sop_uid for h in stack.slices])
    if not missing:
        return []
    folder = stack.slices[0].path.parent
    message = (
        f"series {stack.key} in {folder}: files lack {', '.join(missing)}; it is listed under a "
        "stand-in key and its fingerprint rests on geometry alone"
    )
    return [Problem(MISSING_UIDS, message)]
