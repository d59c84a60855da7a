"""Lesion detection counts on cases worked out by hand."""

import numpy as np
import pytest

from deepliver.evaluation.lesions import (
    RULES,
    SIZE_CLASSES,
    LesionCounts,
    lesion_detection,
    size_class,
)

SPACING = (2.0, 0.8, 0.8)  # (z, y, x) mm
SHAPE = (12, 20, 30)


def box(z, y, x, shape=SHAPE) -> np.ndarray:
    """A mask with the voxels [z0, z1) x [y0, y1) x [x0, x1) set."""
    mask = np.zeros(shape, dtype=bool)
    mask[slice(*z), slice(*y), slice(*x)] = True
    return mask


def counts(prediction, truth, spacing=SPACING) -> dict[tuple[str, str], LesionCounts]:
    return {(c.rule, c.size_class): c for c in lesion_detection(prediction, truth, spacing)}


def tp_fp_fn(entry: LesionCounts) -> tuple[int, int, int]:
    return entry.tp, entry.fp, entry.fn


CUBE = ((2, 8), (4, 10), (4, 10))  # 6 x 6 x 6 = 216 voxels


def test_returns_every_rule_and_size_class_in_order():
    result = lesion_detection(box(*CUBE), box(*CUBE), SPACING)
    expected = [(rule, name) for rule in RULES for name in ("all", *(s[0] for s in SIZE_CLASSES))]
    assert [(c.rule, c.size_class) for c in result] == expected


def test_sphere_predicted_exactly_is_found_by_both_rules():
    grids = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    terms = zip(grids, (6, 10, 15), SPACING, strict=True)
    sphere = sum(((g - c) * s) ** 2 for g, c, s in terms) <= 7.0**2
    result = counts(sphere, sphere)
    for rule in RULES:
        entry = result[(rule, "all")]
        assert tp_fp_fn(entry) == (1, 0, 0)
        assert (entry.precision, entry.recall, entry.f1) == (1.0, 1.0, 1.0)
    # 14 mm across in plane: the 10-20 mm class.
    assert tp_fp_fn(result[("lits", "10-20 mm")]) == (1, 0, 0)
    assert tp_fp_fn(result[("lits", "<10 mm")]) == (0, 0, 0)


def test_a_third_of_a_lesion_is_a_miss_for_lits_and_a_hit_for_overlap():
    truth = box(*CUBE)
    prediction = box((2, 8), (4, 10), (4, 6))  # 72 of 216 voxels: IoU 1/3
    result = counts(prediction, truth)
    lits, overlap = result[("lits", "all")], result[("overlap", "all")]
    assert tp_fp_fn(lits) == (0, 1, 1)
    assert (lits.precision, lits.recall, lits.f1) == (0.0, 0.0, 0.0)
    assert tp_fp_fn(overlap) == (1, 0, 0)
    assert (overlap.precision, overlap.recall, overlap.f1) == (1.0, 1.0, 1.0)


def test_two_pieces_of_one_lesion_merge_under_lits():
    truth = box(*CUBE)
    # Columns 4-6 and 8-9, a full empty plane between: two components, 180 of 216 voxels.
    prediction = box((2, 8), (4, 10), (4, 7)) | box((2, 8), (4, 10), (8, 10))
    result = counts(prediction, truth)
    assert tp_fp_fn(result[("lits", "all")]) == (1, 0, 0)
    assert tp_fp_fn(result[("overlap", "all")]) == (1, 0, 0)


def test_one_prediction_covering_two_lesions_detects_both():
    truth = box((2, 8), (4, 10), (4, 10)) | box((2, 8), (4, 10), (12, 18))
    prediction = box((2, 8), (4, 10), (4, 18))  # both plus the gap: IoU 432 / 504
    result = counts(prediction, truth)
    assert tp_fp_fn(result[("lits", "all")]) == (2, 0, 0)
    assert tp_fp_fn(result[("overlap", "all")]) == (2, 0, 0)


def test_one_prediction_touching_a_second_lesion_is_merged_with_it():
    truth = box((2, 8), (4, 10), (4, 10)) | box((2, 8), (4, 10), (12, 18))
    # The first lesion, the gap and one column of the second: 324 voxels. Alone against the
    # first lesion its IoU would be 216 / 324; merged with the second it is 252 / 504 = 0.5,
    # not above 0.5, so LiTS counts both lesions missed and the prediction false.
    prediction = box((2, 8), (4, 10), (4, 13))
    lits = counts(prediction, truth)[("lits", "all")]
    assert tp_fp_fn(lits) == (0, 1, 2)
    assert (lits.precision, lits.recall, lits.f1) == (0.0, 0.0, 0.0)
    # One more column of the second lesion: 288 / 504 > 0.5, both lesions count as found.
    wider = box((2, 8), (4, 10), (4, 14))
    assert tp_fp_fn(counts(wider, truth)[("lits", "all")]) == (2, 0, 0)
    assert tp_fp_fn(counts(prediction, truth)[("overlap", "all")]) == (2, 0, 0)


def test_pure_false_positive():
    truth = box(*CUBE)
    prediction = truth | box((2, 5), (14, 17), (20, 23))
    result = counts(prediction, truth)
    for rule in RULES:
        entry = result[(rule, "all")]
        assert tp_fp_fn(entry) == (1, 1, 0)
        assert entry.precision == 0.5
        assert entry.recall == 1.0
        assert entry.f1 == pytest.approx(2 / 3)
    # Only a prediction and no truth: precision 0, recall undefined.
    only = counts(box(*CUBE), np.zeros(SHAPE, dtype=np.uint8))[("lits", "all")]
    assert tp_fp_fn(only) == (0, 1, 0)
    assert (only.precision, only.recall, only.f1) == (0.0, None, 0.0)


def test_missed_lesion_without_any_prediction():
    entry = counts(np.zeros(SHAPE), box(*CUBE))[("overlap", "all")]
    assert tp_fp_fn(entry) == (0, 0, 1)
    assert (entry.precision, entry.recall, entry.f1) == (None, 0.0, 0.0)


def test_no_lesions_at_all_leaves_every_ratio_undefined():
    empty = np.zeros(SHAPE, dtype=np.uint8)
    result = lesion_detection(empty, empty, SPACING)
    assert len(result) == len(RULES) * (1 + len(SIZE_CLASSES))
    for entry in result:
        assert tp_fp_fn(entry) == (0, 0, 0)
        assert (entry.precision, entry.recall, entry.f1) == (None, None, None)


def disc(shape, centre_zyx, diameter_mm, spacing_yx, slices=2) -> np.ndarray:
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    radius = diameter_mm / 2
    inside = ((y - centre_zyx[1]) * spacing_yx[0]) ** 2 + (
        (x - centre_zyx[2]) * spacing_yx[1]
    ) ** 2 <= radius**2
    return inside & (z >= centre_zyx[0]) & (z < centre_zyx[0] + slices)


def test_size_classes_follow_each_lesions_own_diameter():
    shape, spacing = (8, 50, 160), (2.0, 0.8, 0.8)
    small = disc(shape, (2, 25, 10), 6.0, spacing[1:])
    medium = disc(shape, (2, 25, 40), 15.0, spacing[1:])
    large = disc(shape, (2, 25, 100), 30.0, spacing[1:])
    false_small = disc(shape, (5, 25, 145), 6.0, spacing[1:])
    truth = small | medium | large
    prediction = medium | false_small  # finds the medium lesion only, invents a small one
    result = counts(prediction, truth, spacing)
    for rule in RULES:
        assert tp_fp_fn(result[(rule, "all")]) == (1, 1, 2)
        assert tp_fp_fn(result[(rule, "<10 mm")]) == (0, 1, 1)
        assert tp_fp_fn(result[(rule, "10-20 mm")]) == (1, 0, 0)
        assert tp_fp_fn(result[(rule, ">20 mm")]) == (0, 0, 1)
    assert result[("lits", ">20 mm")].recall == 0.0
    assert result[("lits", ">20 mm")].precision is None
    assert result[("lits", "10-20 mm")].f1 == 1.0


def test_diameter_uses_the_in_plane_spacing_in_the_right_order():
    # 12 columns of 2 mm (24 mm) by 2 rows of 0.5 mm: swapping x and y would measure 6 mm.
    truth = box((1, 2), (3, 5), (3, 15), shape=(3, 8, 20))
    result = counts(truth, truth, (3.0, 0.5, 2.0))
    assert tp_fp_fn(result[("lits", ">20 mm")]) == (1, 0, 0)


def test_diagonal_contact_is_one_lesion():
    truth = box((2, 4), (2, 4), (2, 4)) | box((4, 6), (4, 6), (4, 6))  # share one corner
    result = counts(truth, truth)
    assert tp_fp_fn(result[("lits", "all")]) == (1, 0, 0)
    # Half of it predicted: one truth lesion, IoU 1/2, not above 1/2.
    half = counts(box((2, 4), (2, 4), (2, 4)), truth)
    assert tp_fp_fn(half[("lits", "all")]) == (0, 1, 1)
    assert tp_fp_fn(half[("overlap", "all")]) == (1, 0, 0)


def test_size_class_bounds():
    assert size_class(0.0) == "<10 mm"
    assert size_class(9.99) == "<10 mm"
    assert size_class(10.0) == "10-20 mm"
    assert size_class(20.0) == ">20 mm"
    assert size_class(250.0) == ">20 mm"


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match=r"\(2, 3, 4\).*\(2, 3, 5\)"):
        lesion_detection(np.zeros((2, 3, 4)), np.zeros((2, 3, 5)), SPACING)
