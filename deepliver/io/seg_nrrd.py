"""Slicer's ``.seg.nrrd`` <-> :class:`Segmentation`, through ``slicerio``.

Writing gives Slicer everything it shows: segment names, colours, terminology tags from the
structure table, per-segment extents, and overlapping segments (the liver holds its tumors) in
separate layers, as Slicer itself stores them. The layers are laid out here from each mask's
bounding box (slicerio.add_segment scans the whole volume for every segment: seconds at
512 x 512 x 200); slicerio writes the header and the gzip-compressed voxels. Geometry is written
in LPS ("space directions", "space origin"), so the file lies exactly on the series grid.
Reading maps each segment back to its structure by its terminology, else by its name, and
refuses a segment it cannot place: a guessed structure would put a spine into the liver.
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
from deepliver.volume import LPS_TO_RAS, Box, Grid

SUFFIX = ".seg.nrrd"
# zlib level of the voxels: on a 512 x 512 x 200 liver with tumors (2 layers), 6 takes about half
# the time of 9 for a file about 15 % larger; 1 is faster still but about 3x larger than 6
# (bench/bench_seg_nrrd.py).
GZIP_LEVEL = 6
MAX_LABEL = int(np.iinfo(np.uint8).max)  # label values one uint8 layer can hold


def _slicer_color(color: tuple[int, int, int]) -> list[float]:
    return [round(c / 255.0, 6) for c in color]


def _overlaps(masks: np.ndarray, boxes: list[Box | None], a: int, b: int) -> bool:
    """Whether segments ``a`` and ``b`` share a voxel, looked at where their boxes meet."""
    if boxes[a] is None or boxes[b] is None:
        return False
    start = [max(p, q) for p, q in zip(boxes[a].start, boxes[b].start, strict=True)]
    stop = [min(p, q) for p, q in zip(boxes[a].stop, boxes[b].stop, strict=True)]
    if any(e <= s for s, e in zip(start, stop, strict=True)):
        return False
    common = tuple(slice(s, e) for s, e in zip(start, stop, strict=True))
    return bool(np.any(masks[a][common] & masks[b][common]))


def _layout(masks: np.ndarray, boxes: list[Box | None]) -> list[tuple[int, int]]:
    """(layer, label value) of each segment, as Slicer and ``slicerio.add_segment`` lay them out.

    A segment goes to the first layer where it overlaps no segment already there and a label
    value is left, else to a new layer; label values count up from 1 in each layer. The liver
    takes layer 0 and its tumors, which do not touch each other, share layer 1.
    """
    layers: list[list[int]] = []  # segment indices in each layer
    placed = []
    for index in range(len(masks)):
        free = (
            layer
            for layer, members in enumerate(layers)
            if len(members) < MAX_LABEL
            and not any(_overlaps(masks, boxes, index, other) for other in members)
        )
        layer = next(free, len(layers))
        if layer == len(layers):
            layers.append([])
        layers[layer].append(index)
        placed.append((layer, len(layers[layer])))
    return placed


def _extent(box: Box | None) -> list[int]:
    """Slicer's inclusive i, j, k ranges of the set voxels; "0 -1 0 -1 0 -1" when none is."""
    if box is None:
        return [0, -1, 0, -1, 0, -1]
    return [v for a, b in zip(box.start[::-1], box.stop[::-1], strict=True) for v in (a, b - 1)]


def _segmentation_dict(segmentation: Segmentation) -> dict:
    """slicerio's in-memory form, laid out here: voxels (i, j, k) or (layer, i, j, k).

    Each mask is touched only inside its bounding box (found once), so the cost is one pass per
    mask to find the box plus the boxes themselves, not several full-volume passes per segment.
    """
    grid = segmentation.grid
    masks = segmentation.masks
    boxes = [Box.around(mask) for mask in masks]
    placed = _layout(masks, boxes)
    n_layers = max((layer for layer, _ in placed), default=0) + 1
    # (z, y, x, layer) in C order is (layer, i, j, k) in Fortran order: the layer varies
    # fastest on disk, as NRRD's "list" axis and Slicer want it, with no reordering copy.
    voxels = np.zeros((*grid.shape, n_layers), dtype=np.uint8)
    segments = []
    for number, (segment, mask, box, (layer, label)) in enumerate(
        zip(segmentation.segments, masks, boxes, placed, strict=True), start=1
    ):
        if box is not None:
            voxels[(*box.slices, layer)][mask[box.slices]] = label
        segments.append(
            {
                "id": f"Segment_{number}",
                "name": segment.name,
                "color": _slicer_color(segment.display_color),
                "terminology": terminology_entry_from_string(terminology_entry(segment.structure)),
                "labelValue": label,
                "layer": layer,
                "extent": _extent(box),
            }
        )
    voxels = voxels.transpose(3, 2, 1, 0)
    return {
        "voxels": voxels if n_layers > 1 else voxels[0],
        "ijkToLPS": np.asarray(grid.ijk_to_lps(), dtype=np.float64),
        "segments": segments,
        "containedRepresentationNames": ["Binary labelmap"],
    }


def write_seg_nrrd(segmentation: Segmentation, path: Path) -> Path:
    """Write ``segmentation`` as a Slicer ``.seg.nrrd``, atomically (temporary file, rename)."""
    path = Path(path)
    if not path.name.lower().endswith(SUFFIX):
        raise DeepLiverError(f"{path}: a Slicer segmentation file must end with {SUFFIX}")
    data = _segmentation_dict(segmentation)
    try:
        return write_atomically(
            path,
            lambda p: slicerio.write_segmentation(str(p), data, compression_level=GZIP_LEVEL),
            ".nrrd",
        )
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
