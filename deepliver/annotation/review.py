"""The rules of a review session that are not Slicer: segment names and colours, which revision
to restore, boxes around segments.

A review starts from the series' latest reader revision, else its latest model revision, else
an empty segmentation with one Liver segment. Tumors are named "Tumor 1", "Tumor 2", ... (the
smallest free number); every segment takes its structure's colour. A box is the axis-aligned
extent of a segment's voxels in LPS millimetres (voxel edges, not centres), stored as
``{"segment": name, "min": [x, y, z], "max": [x, y, z]}``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from deepliver.annotation.segmentation import Segment, Segmentation, next_tumor_name
from deepliver.annotation.structures import LIVER, TUMOR, Structure
from deepliver.errors import DeepLiverError
from deepliver.volume import Grid

TUMOR_NAME = re.compile(r"Tumor (?P<number>[1-9][0-9]*)")


def segment_order_key(name: str) -> tuple:
    """Liver first, then tumors by number, then anything else by name."""
    if name == LIVER.name:
        return (0, 0, name)
    match = TUMOR_NAME.fullmatch(name)
    if match:
        return (1, int(match["number"]), name)
    return (2, 0, name.lower())


def empty_review(grid: Grid) -> Segmentation:
    """Where a series without revisions starts: one empty Liver segment on its grid."""
    return Segmentation(grid, (Segment(LIVER.name, LIVER),), np.zeros((1, *grid.shape), bool))


def new_segment(segmentation_names: Iterable[str], structure: Structure = TUMOR) -> Segment:
    """The segment "Add tumor" (or "Add liver") creates next to the named ones."""
    names = list(segmentation_names)
    if structure == TUMOR:
        return Segment(next_tumor_name(names), TUMOR)
    if structure.name in names:
        raise DeepLiverError(f"there is already a {structure.name} segment")
    return Segment(structure.name, structure)


def color_float(rgb: Iterable[int]) -> tuple[float, float, float]:
    """RGB 0..255 as 0..1 floats (Slicer segment colours)."""
    return tuple(round(int(c) / 255.0, 6) for c in rgb)


def color_int(rgb_float: Iterable[float]) -> tuple[int, int, int]:
    """0..1 floats as RGB 0..255, the inverse of :func:`color_float` for its outputs."""
    return tuple(int(round(min(max(float(c), 0.0), 1.0) * 255.0)) for c in rgb_float)


def segment_from_slicer(name: str, terminology: str = "", rgb_float=None) -> Segment:
    """The :class:`Segment` of a Slicer segment: its structure from the terminology entry, or
    from the name when the entry is missing or unknown; its colour kept where it differs from
    the structure's."""
    from deepliver.annotation.terminology import structure_for_entry, structure_for_name

    structure = (structure_for_entry(terminology) if terminology else None) or structure_for_name(
        name
    )
    if structure is None:
        raise DeepLiverError(
            f"segment {name!r} is neither liver nor tumor (by its terminology or its name); "
            "rename it, set its terminology, or delete it before saving"
        )
    color = color_int(rgb_float) if rgb_float is not None else None
    if color == structure.color:
        color = None
    return Segment(name, structure, color)


def ordered(segmentation: Segmentation) -> Segmentation:
    """The same segments in :func:`segment_order_key` order."""
    order = sorted(
        range(len(segmentation.segments)),
        key=lambda i: segment_order_key(segmentation.segments[i].name),
    )
    return Segmentation(
        segmentation.grid,
        tuple(segmentation.segments[i] for i in order),
        segmentation.masks[order] if order else segmentation.masks,
    )


# --- boxes -------------------------------------------------------------------------------


def mask_box(grid: Grid, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(min, max) LPS corners of the axis-aligned box around the voxels of ``mask``, edges
    included; None for an empty mask."""
    mask = np.asarray(mask)
    if mask.shape != grid.shape:
        raise DeepLiverError(f"a mask of shape {mask.shape} is not on a grid of {grid.shape}")
    where = np.nonzero(mask)
    if where[0].size == 0:
        return None
    k0, j0, i0 = (int(w.min()) for w in where)
    k1, j1, i1 = (int(w.max()) for w in where)
    corners = np.array(
        [
            [i, j, k]
            for i in (i0 - 0.5, i1 + 0.5)
            for j in (j0 - 0.5, j1 + 0.5)
            for k in (k0 - 0.5, k1 + 0.5)
        ]
    )
    points = grid.index_to_physical(corners)
    return points.min(axis=0), points.max(axis=0)


def box_record(segment: str, minimum, maximum) -> dict:
    """A box as the store keeps it; refuses inverted or non-finite corners."""
    low = [float(v) for v in np.ravel(minimum)]
    high = [float(v) for v in np.ravel(maximum)]
    if len(low) != 3 or len(high) != 3:
        raise DeepLiverError(f"box of {segment!r}: corners need 3 coordinates")
    if not all(np.isfinite(low + high)) or any(a > b for a, b in zip(low, high, strict=True)):
        raise DeepLiverError(f"box of {segment!r}: min {low} must not exceed max {high}")
    return {"segment": str(segment), "min": low, "max": high}


def segment_box(grid: Grid, segmentation: Segmentation, name: str) -> dict | None:
    """The box record around segment ``name``, None when it is empty."""
    corners = mask_box(grid, segmentation.mask(name))
    return box_record(name, *corners) if corners is not None else None


def box_center(record: dict) -> np.ndarray:
    return (np.asarray(record["min"], float) + np.asarray(record["max"], float)) / 2.0


def boxes_for(boxes: Iterable, names: Iterable[str]) -> list[dict]:
    """The box records (from dicts or the store's ``LesionBox``) whose segment is among
    ``names``; the others belong to segments that are gone."""
    keep = set(names)
    records = [b.to_dict() if hasattr(b, "to_dict") else dict(b) for b in boxes]
    return [box_record(r["segment"], r["min"], r["max"]) for r in records if r["segment"] in keep]


# --- which revision to restore -----------------------------------------------------------


@dataclass(frozen=True)
class RestoreChoice:
    revision: object | None  # the store's Revision, or None to start empty
    source: str  # "manual", "model" or "empty"

    def describe(self) -> str:
        if self.revision is None:
            return "no revision yet: starting with an empty Liver segment"
        number = getattr(self.revision, "number", None)
        reader = getattr(self.revision, "reader", "") or ""
        which = f"revision {number}" if number is not None else "the latest revision"
        by = f" by {reader}" if reader and self.source == "manual" else ""
        kind = "the model's" if self.source == "model" else "the reader's"
        return f"restored {kind} {which}{by}"


def restore_choice(store, series_uid: str, in_store: bool = True) -> RestoreChoice:
    """The latest reader revision, else the latest model revision, else nothing (always
    nothing for a series the store has never seen: ``in_store`` False)."""
    if not in_store:
        return RestoreChoice(None, "empty")
    for source in ("manual", "model"):
        revision = store.latest(series_uid, source=source)
        if revision is not None:
            return RestoreChoice(revision, source)
    return RestoreChoice(None, "empty")
