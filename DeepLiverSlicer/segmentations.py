"""Label maps <-> segmentation nodes, always on the exact grid of a reference volume.

A label map (0 background, then one value per structure) becomes one segment per structure,
named, coloured and coded (see :mod:`DeepLiverSlicer.terminology`). Going back, each segment is
read on the reference volume's grid; a segmentation whose own reference geometry is another
grid is refused with :class:`~deepliver.volume.GridMismatchError`, never resampled.
"""

from __future__ import annotations

import numpy as np

from deepliver.annotation.structures import STRUCTURES, Structure
from deepliver.volume import Grid, GridMismatchError, Volume

# vtkSegmentationConverter::SerializeImageGeometry: 16 matrix elements (row by row), then the
# 6 extent values, each followed by this separator.
GEOMETRY_SEPARATOR = ";"


def split_labels(labels: np.ndarray, structures=STRUCTURES) -> dict[int, np.ndarray]:
    """One uint8 0/1 mask per structure; refuses label values no structure has."""
    known = {s.label for s in structures}
    found = {int(v) for v in np.unique(labels)} - {0}
    unknown = sorted(found - known)
    if unknown:
        names = ", ".join(f"{s.label} ({s.name})" for s in structures)
        raise ValueError(f"label values {unknown} belong to no structure; known: {names}")
    return {s.label: (labels == s.label).astype(np.uint8) for s in structures}


def merge_masks(masks: dict[int, np.ndarray], shape, structures=STRUCTURES) -> np.ndarray:
    """A uint8 label map from per-structure masks; later structures win where masks overlap."""
    labels = np.zeros(shape, dtype=np.uint8)
    for structure in structures:
        mask = masks.get(structure.label)
        if mask is None:
            continue
        if mask.shape != tuple(shape):
            raise GridMismatchError(
                f"segment {structure.name!r} has shape {mask.shape}, expected {tuple(shape)}"
            )
        labels[mask > 0] = structure.label
    return labels


def geometry_text(grid: Grid) -> str:
    """``grid`` as Slicer serialises a segmentation's reference image geometry."""
    matrix = grid.ijk_to_ras()
    numbers = [repr(float(v)) for v in matrix.reshape(-1)]
    size_i, size_j, size_k = grid.size_ijk
    numbers += [str(v) for v in (0, size_i - 1, 0, size_j - 1, 0, size_k - 1)]
    return "".join(n + GEOMETRY_SEPARATOR for n in numbers)


def grid_from_geometry_text(text: str) -> Grid:
    """The grid of a serialised reference image geometry (IJK-to-RAS matrix and extent)."""
    parts = [p for p in text.split(GEOMETRY_SEPARATOR) if p.strip()]
    if len(parts) < 22:
        raise ValueError(f"a reference image geometry has 22 numbers, got {len(parts)}")
    matrix = np.array([float(p) for p in parts[:16]]).reshape(4, 4)
    i0, i1, j0, j1, k0, k1 = (int(float(p)) for p in parts[16:22])
    shape = (k1 - k0 + 1, j1 - j0 + 1, i1 - i0 + 1)
    if min(shape) < 1:
        raise ValueError(f"the reference image geometry has an empty extent {parts[16:22]}")
    shifted = matrix.copy()
    shifted[:, 3] = matrix @ np.array([i0, j0, k0, 1.0])  # the voxel at the extent's start
    return Grid.from_ijk_to_ras(shifted, shape)


def require_segmentation_grid(segmentation_grid: Grid | None, reference: Grid) -> None:
    if segmentation_grid is not None and not segmentation_grid.same_as(reference):
        difference = segmentation_grid.describe_difference(reference)
        raise GridMismatchError(
            f"the segmentation is not on the grid of its reference volume: {difference}"
        )


# --- Slicer ------------------------------------------------------------------------------


def _segmentation_grid(segmentation_node) -> Grid | None:
    import slicer

    name = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    text = segmentation_node.GetSegmentation().GetConversionParameter(name)
    return grid_from_geometry_text(text) if text else None


def add_structure_segment(segmentation_node, structure: Structure) -> str:
    """An empty segment for ``structure`` (name, colour, terminology); returns its ID."""
    from DeepLiverSlicer.terminology import set_segment_terminology

    segmentation = segmentation_node.GetSegmentation()
    segment_id = segmentation.GetSegmentIdBySegmentName(structure.name)
    if not segment_id:
        segment_id = segmentation.AddEmptySegment("", structure.name, structure.color_float)
    set_segment_terminology(segmentation.GetSegment(segment_id), structure)
    return segment_id


def new_segmentation(reference_node, name: str = "", structures=STRUCTURES):
    """A segmentation node on ``reference_node``'s grid with one empty segment per structure."""
    import slicer

    segmentation_node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    segmentation_node.CreateDefaultDisplayNodes()
    segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(reference_node)
    for structure in structures:
        add_structure_segment(segmentation_node, structure)
    return segmentation_node


def segmentation_from_labels(
    labels: Volume, reference_node, name: str = "", structures=STRUCTURES, segmentation_node=None
):
    """Segments from a label map that must lie on ``reference_node``'s exact grid."""
    import slicer

    from DeepLiverSlicer.volumes import volume_from_node

    reference = volume_from_node(reference_node, copy=False)
    reference.require_same_grid(labels, "label map")
    masks = split_labels(labels.array, structures)
    if segmentation_node is None:
        segmentation_node = new_segmentation(reference_node, name, structures)
    else:
        require_segmentation_grid(_segmentation_grid(segmentation_node), reference.grid)
    for structure in structures:
        segment_id = add_structure_segment(segmentation_node, structure)
        slicer.util.updateSegmentBinaryLabelmapFromArray(
            masks[structure.label], segmentation_node, segment_id, reference_node
        )
    return segmentation_node


def labels_from_segmentation(segmentation_node, reference_node, structures=STRUCTURES) -> Volume:
    """The label map of the structures' segments, on ``reference_node``'s exact grid."""
    import slicer

    from DeepLiverSlicer.volumes import volume_from_node

    reference = volume_from_node(reference_node, copy=False)
    require_segmentation_grid(_segmentation_grid(segmentation_node), reference.grid)
    segmentation = segmentation_node.GetSegmentation()
    masks = {}
    for structure in structures:
        segment_id = segmentation.GetSegmentIdBySegmentName(structure.name)
        if segment_id:
            masks[structure.label] = slicer.util.arrayFromSegmentBinaryLabelmap(
                segmentation_node, segment_id, reference_node
            )
    return reference.with_array(merge_masks(masks, reference.shape, structures))
