""":class:`~deepliver.annotation.segmentation.Segmentation` <-> segmentation node, segment by
segment, on the exact grid of the reference volume.

Each segment (Liver, Tumor 1, Tumor 2, ...) becomes one Slicer segment with its own binary
labelmap, so segments may overlap (the liver contains its tumors) and come back voxel for voxel:
``slicer.util.updateSegmentBinaryLabelmapFromArray`` / ``arrayFromSegmentBinaryLabelmap`` with
the reference volume read and write each mask on that volume's grid. A segmentation whose grid
differs from the volume's is refused (:class:`~deepliver.volume.GridMismatchError`).
"""

from __future__ import annotations

import numpy as np

from deepliver.annotation.segmentation import Segment, Segmentation
from deepliver.volume import Grid, GridMismatchError

# vtkSegmentationConverter::SerializeImageGeometry: 16 matrix elements (row by row), then the
# 6 extent values, each followed by this separator.
GEOMETRY_SEPARATOR = ";"


def segment_color(segment: Segment) -> tuple[float, float, float]:
    from deepliver.annotation.review import color_float

    return color_float(segment.display_color)


def binary_mask(mask) -> np.ndarray:
    """A 0/1 uint8 copy of a mask, the form Slicer's labelmap import takes as is."""
    return np.ascontiguousarray(np.asarray(mask) > 0, dtype=np.uint8)


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


def segment_ids(segmentation_node) -> list[str]:
    segmentation = segmentation_node.GetSegmentation()
    return [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]


def segment_names(segmentation_node) -> list[str]:
    segmentation = segmentation_node.GetSegmentation()
    return [segmentation.GetSegment(i).GetName() for i in segment_ids(segmentation_node)]


def add_segment(segmentation_node, segment: Segment, mask=None, reference_node=None) -> str:
    """A Slicer segment for ``segment`` (name, colour, terminology), filled from ``mask`` on
    ``reference_node``'s grid when given; returns its ID."""
    import slicer

    from DeepLiverSlicer.terminology import set_segment_terminology

    segmentation = segmentation_node.GetSegmentation()
    if segmentation.GetSegmentIdBySegmentName(segment.name):
        raise ValueError(f"the segmentation already has a segment named {segment.name!r}")
    segment_id = segmentation.AddEmptySegment("", segment.name, segment_color(segment))
    set_segment_terminology(segmentation.GetSegment(segment_id), segment.structure)
    if mask is not None and np.any(mask):
        slicer.util.updateSegmentBinaryLabelmapFromArray(
            binary_mask(mask), segmentation_node, segment_id, reference_node
        )
    return segment_id


def remove_segment(segmentation_node, name: str) -> None:
    segmentation = segmentation_node.GetSegmentation()
    segment_id = segmentation.GetSegmentIdBySegmentName(name)
    if not segment_id:
        raise ValueError(f"no segment named {name!r}")
    segmentation.RemoveSegment(segment_id)


def segment_mask(segmentation_node, name: str, reference_node) -> np.ndarray:
    """The boolean mask of segment ``name`` on ``reference_node``'s grid."""
    segment_id = segmentation_node.GetSegmentation().GetSegmentIdBySegmentName(name)
    if not segment_id:
        raise ValueError(f"no segment named {name!r}")
    return _mask(segmentation_node, segment_id, reference_node)


def _mask(segmentation_node, segment_id: str, reference_node) -> np.ndarray:
    import slicer

    array = slicer.util.arrayFromSegmentBinaryLabelmap(
        segmentation_node, segment_id, reference_node
    )
    return np.asarray(array) > 0


def node_from_segmentation(
    segmentation: Segmentation, reference_node, name: str = "", segmentation_node=None
):
    """A segmentation node holding ``segmentation``'s segments on ``reference_node``'s grid.

    An existing ``segmentation_node`` is emptied first and reused (the Segment Editor keeps
    pointing at it); otherwise a new node is added to the scene.
    """
    import slicer

    from DeepLiverSlicer.volumes import volume_from_node

    reference = volume_from_node(reference_node, copy=False)
    if not segmentation.grid.same_as(reference.grid):
        raise GridMismatchError(
            "the segmentation is not on the grid of the series: "
            + segmentation.grid.describe_difference(reference.grid)
        )
    if segmentation_node is None:
        segmentation_node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
        segmentation_node.CreateDefaultDisplayNodes()
    else:
        for segment_id in segment_ids(segmentation_node):
            segmentation_node.GetSegmentation().RemoveSegment(segment_id)
        require_segmentation_grid(_segmentation_grid(segmentation_node), reference.grid)
    segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(reference_node)
    for segment, mask in zip(segmentation.segments, segmentation.masks, strict=True):
        add_segment(segmentation_node, segment, mask, reference_node)
    return segmentation_node


def segmentation_from_node(segmentation_node, reference_node) -> Segmentation:
    """Every segment of the node as a :class:`Segmentation` on ``reference_node``'s grid.

    A segment's structure comes from its terminology (or its name); a segment that is neither
    liver nor tumor is refused with its name in the message.
    """
    from deepliver.annotation.review import segment_from_slicer
    from DeepLiverSlicer.terminology import segment_terminology
    from DeepLiverSlicer.volumes import volume_from_node

    reference = volume_from_node(reference_node, copy=False)
    require_segmentation_grid(_segmentation_grid(segmentation_node), reference.grid)
    segmentation = segmentation_node.GetSegmentation()
    segments, masks = [], []
    for segment_id in segment_ids(segmentation_node):
        slicer_segment = segmentation.GetSegment(segment_id)
        name = slicer_segment.GetName()
        segments.append(
            segment_from_slicer(
                name, segment_terminology(slicer_segment), slicer_segment.GetColor()
            )
        )
        masks.append(_mask(segmentation_node, segment_id, reference_node))
    stacked = np.stack(masks) if masks else None
    return Segmentation(reference.grid, tuple(segments), stacked)


def _segmentation_grid(segmentation_node) -> Grid | None:
    import slicer

    name = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    text = segmentation_node.GetSegmentation().GetConversionParameter(name)
    return grid_from_geometry_text(text) if text else None
