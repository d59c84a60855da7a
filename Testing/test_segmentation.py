"""Segmentations: label maps in and out exactly, one segment per lesion, grids enforced."""

import numpy as np
import pytest

from deepliver.annotation.segmentation import (
    Segment,
    Segmentation,
    lesion_masks,
    next_tumor_name,
)
from deepliver.annotation.structures import LIVER, TUMOR
from deepliver.errors import DeepLiverError
from deepliver.volume import GridMismatchError, Volume


def liver_with_two_tumors(grid) -> Volume:
    labels = np.zeros(grid.shape, dtype=np.uint8)
    labels[2:10, 3:15, 4:18] = 1
    labels[3:6, 4:7, 5:8] = 2  # 27 voxels
    labels[7:9, 10:14, 12:16] = 2  # 32 voxels: the larger lesion
    return Volume(labels, grid)


def test_label_map_round_trip_is_exact_with_one_segment_per_lesion(oblique_grid):
    labels = liver_with_two_tumors(oblique_grid)
    segmentation = Segmentation.from_label_map(labels)
    assert [s.name for s in segmentation.segments] == ["Liver", "Tumor 1", "Tumor 2"]
    assert [s.structure for s in segmentation.segments] == [LIVER, TUMOR, TUMOR]
    assert segmentation.mask("Tumor 1").sum() == 32 and segmentation.mask("Tumor 2").sum() == 27
    # The liver segment is the whole organ: it overlaps the tumors.
    assert segmentation.mask("Liver").sum() == (labels.array > 0).sum()
    back = segmentation.label_map()
    assert back.grid is oblique_grid
    np.testing.assert_array_equal(back.array, labels.array)


def test_unsplit_tumors_are_one_segment(oblique_grid):
    segmentation = Segmentation.from_label_map(liver_with_two_tumors(oblique_grid), False)
    assert [s.name for s in segmentation.segments] == ["Liver", "Tumor"]
    assert segmentation.mask("Tumor").sum() == 59


def test_lesions_touching_at_a_corner_are_one_lesion():
    tumor = np.zeros((4, 4, 4), dtype=bool)
    tumor[0, 0, 0] = tumor[1, 1, 1] = True
    tumor[3, 3, 3] = True
    lesions = lesion_masks(tumor)
    assert [int(m.sum()) for m in lesions] == [2, 1]


def test_unknown_label_values_and_wrong_shapes_are_refused(oblique_grid):
    labels = np.zeros(oblique_grid.shape, dtype=np.uint8)
    labels[0, 0, 0] = 7
    with pytest.raises(DeepLiverError, match="label value 7"):
        Segmentation.from_label_map(Volume(labels, oblique_grid))
    with pytest.raises(GridMismatchError, match="do not fit"):
        Segmentation(oblique_grid, (Segment("Liver", LIVER),), np.zeros((1, 2, 2, 2), bool))
    empty = Segmentation(oblique_grid)
    with pytest.raises(GridMismatchError, match="has shape"):
        empty.with_segment(Segment("Liver", LIVER), np.zeros((2, 2, 2), bool))


def test_editing_segments(oblique_grid):
    segmentation = Segmentation.from_label_map(liver_with_two_tumors(oblique_grid))
    smaller = segmentation.without_segment("Tumor 1")
    assert next_tumor_name(s.name for s in smaller.segments) == "Tumor 1"
    assert next_tumor_name(s.name for s in segmentation.segments) == "Tumor 3"
    mask = np.zeros(oblique_grid.shape, dtype=bool)
    mask[0, 0, 0] = True
    added = smaller.with_segment(Segment("Tumor 1", TUMOR, color=(255, 0, 0)), mask)
    assert added.segments[-1].display_color == (255, 0, 0)
    assert added.label_map().array[0, 0, 0] == TUMOR.label
    with pytest.raises(DeepLiverError, match="unique"):
        added.with_segment(Segment("Liver", LIVER), mask)
    with pytest.raises(DeepLiverError, match="no segment named 'Tumor 9'"):
        added.mask("Tumor 9")
