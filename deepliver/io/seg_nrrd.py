"""Slicer's ``.seg.nrrd`` <-> :class:`Segmentation`, through ``slicerio``.

Writing gives Slicer everything it shows: segment names, colours, terminology tags from the
structure table, per-segment extents, and overlapping segments (the liver holds its tumors) in
separate layers, as Slicer itself stores them. Geometry is written in LPS ("space directions",
"space origin"), so the file lies exactly on the series grid. Reading maps each segment back to
its structure by its terminology, else by its name, and refuses a segment it cannot place:
a guessed structure would put a spine into the liver.
"""

from __future__ import annotations

from pathlib import Path

import nrrd
import numpy as np
import slicerio
from slicerio.segmentation import terminology_entry_from_string, terminology_entry_to_string

from deepliver.annotation.segmentation import Segment, Segmentation
from deepliver.annotation.terminology import (
    require_structure,
    structure_for_entry,
    structure_for_name,
    terminology_entry,
)
from deepliver.errors import DeepLiverError
from deepliver.io.atomic import write_atomically
from deepliver.volume import LPS_TO_RAS, Grid

SUFFIX = ".seg.nrrd"


def _slicer_color(color: tuple[int, int, int]) -> list[float]:
    return [round(c / 255.0, 6) for c in color]


def _segmentation_dict(segmentation: Segmentation) -> dict:
    """slicerio's in-memory form: voxels (i, j, k) or (layer, i, j, k), segments as dicts."""
    grid = segmentation.grid
    data = slicerio.create_segmentation(grid.size_ijk, grid.ijk_to_lps(), dtype="uint8")
    data["containedRepresentationNames"] = ["Binary labelmap"]
    for number, (segment, mask) in enumerate(
        zip(segmentation.segments, segmentation.masks, strict=True), start=1
    ):
        fields = {
            "id": f"Segment_{number}",
            "name": segment.name,
            "color": _slicer_color(segment.display_color),
            "terminology": terminology_entry_from_string(terminology_entry(segment.structure)),
        }
        # slicerio puts the mask in the first layer it does not overlap, with its extent.
        slicerio.add_segment(data, mask.transpose(2, 1, 0), fields)
    return data


def write_seg_nrrd(segmentation: Segmentation, path: Path) -> Path:
    """Write ``segmentation`` as a Slicer ``.seg.nrrd``, atomically (temporary file, rename)."""
    path = Path(path)
    if not path.name.lower().endswith(SUFFIX):
        raise DeepLiverError(f"{path}: a Slicer segmentation file must end with {SUFFIX}")
    data = _segmentation_dict(segmentation)
    try:
        return write_atomically(path, lambda p: slicerio.write_segmentation(str(p), data), ".nrrd")
    except OSError as error:
        raise DeepLiverError(f"{path}: cannot be written ({error})") from None


def _grid(data: dict, path: Path) -> Grid:
    voxels = data["voxels"]
    size_ijk = voxels.shape[-3:]
    try:
        ijk_to_ras = LPS_TO_RAS @ np.asarray(data["ijkToLPS"], dtype=np.float64)
        return Grid.from_ijk_to_ras(ijk_to_ras, tuple(size_ijk[::-1]))
    except ValueError as error:
        raise DeepLiverError(f"{path}: unusable geometry ({error})") from None


def _segment(info: dict, path: Path) -> Segment:
    name = info.get("name") or info["id"]
    structure = None
    if "terminology" in info:
        structure = structure_for_entry(terminology_entry_to_string(info["terminology"]))
    structure = structure or structure_for_name(name)
    require_structure(structure, f"{path}: segment {name!r}")
    color = tuple(int(round(c * 255)) for c in info.get("color", ())) or None
    if color is not None and (len(color) != 3 or color == structure.color):
        color = None  # the structure's own colour, or none worth keeping
    return Segment(name, structure, color)


def read_seg_nrrd(path: Path) -> Segmentation:
    """A ``.seg.nrrd`` as a :class:`Segmentation` on the file's own grid."""
    path = Path(path)
    if not path.is_file():
        raise DeepLiverError(f"{path}: no such file")
    try:
        data = slicerio.read_segmentation(str(path))
    except (OSError, ValueError, nrrd.NRRDError) as error:
        raise DeepLiverError(f"{path}: not a readable Slicer segmentation ({error})") from None
    infos = data.get("segments") or []
    if not infos:
        raise DeepLiverError(
            f"{path}: no segments described in the header; a plain label map is read with "
            "deepliver.io.image_files.read_image, then Segmentation.from_label_map"
        )
    if data["voxels"].ndim not in (3, 4):
        raise DeepLiverError(
            f"{path}: expected 3D or layered 4D voxels, got {data['voxels'].ndim}D"
        )
    grid = _grid(data, path)
    segments = [_segment(info, path) for info in infos]
    masks = [slicerio.segment_mask(data, info).transpose(2, 1, 0) for info in infos]
    try:
        return Segmentation(grid, tuple(segments), np.stack(masks))
    except DeepLiverError as error:
        raise DeepLiverError(f"{path}: {error}") from None
