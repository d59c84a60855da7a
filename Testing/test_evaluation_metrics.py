"""Structure metrics against hand computations, brute force and MONAI's own functions."""

import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.spatial.distance import cdist

from deepliver.evaluation.metrics import IMPLEMENTATION, structure_metrics

SPACING = (2.5, 0.8, 0.8)  # (z, y, x) mm
KEYS = {
    "tp",
    "fp",
    "fn",
    "tn",
    "dice",
    "jaccard",
    "precision",
    "recall",
    "specificity",
    "accuracy",
    "hd_mm",
    "hd95_mm",
    "assd_mm",
    "surface_dice",
    "volume_truth_ml",
    "volume_prediction_ml",
    "volume_difference_ml",
    "empty",
}


def cube(shape, start, side) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(s, s + side) for s in start)] = True
    return mask


def sphere(shape, centre, radius_mm, spacing) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    squared = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, spacing, strict=True))
    return squared <= radius_mm**2


def random_mask(rng, shape, smooth: bool) -> np.ndarray:
    noise = rng.random(shape)
    if smooth:
        noise = ndimage.gaussian_filter(noise, 1.2)
        return noise > np.quantile(noise, 0.55)
    return noise > 0.6


# --- brute force, written independently of MONAI -------------------------------------------


def brute_surface(mask: np.ndarray) -> np.ndarray:
    """Mask voxels with a face neighbour outside the mask or outside the array."""
    padded = np.pad(mask, 1)
    inner = padded[1:-1, 1:-1, 1:-1]
    surface = np.zeros_like(mask)
    for axis in range(3):
        for step in (-1, 1):
            neighbour = np.roll(padded, step, axis=axis)[1:-1, 1:-1, 1:-1]
            surface |= inner & ~neighbour
    return surface


def brute_distances(prediction, truth, spacing):
    points_p = np.argwhere(brute_surface(prediction)) * np.asarray(spacing)
    points_t = np.argwhere(brute_surface(truth)) * np.asarray(spacing)
    pairwise = cdist(points_p, points_t)
    return pairwise.min(axis=1), pairwise.min(axis=0)


# --- hand computed -------------------------------------------------------------------------


@pytest.mark.parametrize(("axis", "shift"), [(0, 2), (2, 3), (1, 1)])
def test_shifted_cube_by_hand(axis, shift):
    side, shape = 6, (16, 16, 16)
    truth = cube(shape, (4, 4, 4), side)
    start = [4, 4, 4]
    start[axis] += shift
    prediction = cube(shape, tuple(start), side)

    m = structure_metrics(prediction, truth, SPACING)

    overlap = side * side * (side - shift)
    assert set(m) == KEYS
    assert (m["tp"], m["fp"], m["fn"]) == (overlap, side**3 - overlap, side**3 - overlap)
    assert m["tn"] == 16**3 - side**3 - (side**3 - overlap)
    assert m["dice"] == pytest.approx((side - shift) / side)
    assert m["jaccard"] == pytest.approx((side - shift) / (side + shift))
    assert m["precision"] == m["recall"] == pytest.approx((side - shift) / side)
    # Every truth voxel lies at least `shift` voxels behind the moved face along the axis, and
    # the face centre's twin is exactly that far: a pure shift is its own Hausdorff distance.
    assert m["hd_mm"] == pytest.approx(shift * SPACING[axis], rel=1e-6)
    voxel_ml = 2.5 * 0.8 * 0.8 / 1000
    assert m["volume_truth_ml"] == pytest.approx(216 * voxel_ml)
    assert m["volume_prediction_ml"] == pytest.approx(216 * voxel_ml)
    assert m["volume_difference_ml"] == pytest.approx(0.0)
    assert m["empty"] == "none"


def test_identical_masks_score_perfectly():
    truth = cube((10, 10, 10), (2, 3, 4), 5)
    m = structure_metrics(truth, truth.astype(np.uint8) * 2, SPACING)
    assert (m["dice"], m["jaccard"], m["surface_dice"]) == (1.0, 1.0, 1.0)
    assert (m["hd_mm"], m["hd95_mm"], m["assd_mm"]) == (0.0, 0.0, 0.0)
    assert m["specificity"] == m["accuracy"] == 1.0


def test_volume_difference_is_prediction_minus_truth():
    truth = cube((12, 12, 12), (2, 2, 2), 4)
    prediction = cube((12, 12, 12), (2, 2, 2), 6)
    m = structure_metrics(prediction, truth, (2.0, 1.0, 0.5))
    assert m["volume_truth_ml"] == pytest.approx(64 * 1e-3)
    assert m["volume_prediction_ml"] == pytest.approx(216 * 1e-3)
    assert m["volume_difference_ml"] == pytest.approx(152 * 1e-3)
    assert m["precision"] == pytest.approx(64 / 216)
    assert m["recall"] == 1.0


def test_concentric_spheres_hd_is_radius_difference():
    spacing = (1.5, 0.8, 0.8)
    shape, centre = (24, 40, 40), (12, 20, 20)
    truth = sphere(shape, centre, 12.0, spacing)
    prediction = sphere(shape, centre, 8.0, spacing)

    m = structure_metrics(prediction, truth, spacing)

    diagonal = math.sqrt(sum(s * s for s in spacing))
    assert m["hd_mm"] == pytest.approx(4.0, abs=diagonal)
    assert m["hd95_mm"] == pytest.approx(4.0, abs=diagonal)
    assert m["assd_mm"] == pytest.approx(4.0, abs=diagonal)
    assert m["hd95_mm"] <= m["hd_mm"]
    assert m["volume_truth_ml"] == pytest.approx(4 / 3 * math.pi * 12.0**3 / 1000, rel=0.05)
    assert m["dice"] == pytest.approx(2 * 8**3 / (8**3 + 12**3), rel=0.05)
    # Surfaces 4 mm apart: nothing within 2 mm, everything within 6 mm.
    assert m["surface_dice"] == 0.0
    assert structure_metrics(prediction, truth, spacing, tolerance_mm=6.0)["surface_dice"] == 1.0


# --- brute force and MONAI -----------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_distances_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    spacing = (2.0, 0.7, 1.1)
    smooth = seed % 2 == 0
    prediction = random_mask(rng, (12, 14, 10), smooth)
    truth = random_mask(rng, (12, 14, 10), smooth)

    m = structure_metrics(prediction, truth, spacing, tolerance_mm=1.5)

    to_truth, to_prediction = brute_distances(prediction, truth, spacing)
    pooled = np.concatenate([to_truth, to_prediction])
    assert m["hd_mm"] == pytest.approx(pooled.max(), rel=1e-5)
    hd95 = max(np.percentile(to_truth, 95), np.percentile(to_prediction, 95))
    assert m["hd95_mm"] == pytest.approx(hd95, rel=1e-5)
    assert m["assd_mm"] == pytest.approx(pooled.mean(), rel=1e-5)
    assert m["surface_dice"] == pytest.approx(np.mean(pooled <= 1.5))
    assert m["hd_mm"] > 0


@pytest.mark.filterwarnings("ignore:.*always_return_as_numpy:FutureWarning")
@pytest.mark.parametrize("seed", range(3))
def test_matches_monai_compute_functions(seed):
    from monai.metrics import (
        compute_average_surface_distance,
        compute_hausdorff_distance,
        compute_surface_dice,
    )

    rng = np.random.default_rng(100 + seed)
    spacing = (2.5, 0.8, 0.9)
    prediction = random_mask(rng, (10, 16, 12), smooth=True)
    truth = random_mask(rng, (10, 16, 12), smooth=True)

    def one_hot(mask):
        tensor = torch.from_numpy(mask)
        return torch.stack([~tensor, tensor])[None].float()

    p, t = one_hot(prediction), one_hot(truth)
    kwargs = {"include_background": False, "spacing": spacing}
    m = structure_metrics(prediction, truth, spacing, tolerance_mm=2.0)

    assert m["hd_mm"] == pytest.approx(compute_hausdorff_distance(p, t, **kwargs).item())
    hd95 = compute_hausdorff_distance(p, t, percentile=95, **kwargs).item()
    assert m["hd95_mm"] == pytest.approx(hd95, rel=1e-5)
    assd = compute_average_surface_distance(p, t, symmetric=True, **kwargs).item()
    assert m["assd_mm"] == pytest.approx(assd, rel=1e-5)
    nsd = compute_surface_dice(p, t, class_thresholds=[2.0], **kwargs).item()
    assert m["surface_dice"] == pytest.approx(nsd, rel=1e-6)


def test_crop_leaves_every_metric_unchanged():
    rng = np.random.default_rng(7)
    prediction = random_mask(rng, (12, 14, 10), smooth=True)
    truth = random_mask(rng, (12, 14, 10), smooth=True)
    assert prediction[0].any() and truth[:, :, -1].any()  # touches the array's border

    def embedded(mask):
        large = np.zeros((30, 40, 35), dtype=bool)
        large[9:21, 20:34, 25:35] = mask  # flush with the large volume's last x column
        return large

    small = structure_metrics(prediction, truth, SPACING)
    large = structure_metrics(embedded(prediction), embedded(truth), SPACING)

    extra = 30 * 40 * 35 - 12 * 14 * 10
    assert large["tn"] == small["tn"] + extra
    for key in KEYS - {"tn", "specificity", "accuracy"}:
        assert large[key] == small[key], key
    assert large["specificity"] > small["specificity"]


# --- empty masks ---------------------------------------------------------------------------


def test_both_empty_is_perfect():
    empty = np.zeros((5, 6, 7), dtype=np.uint8)
    m = structure_metrics(empty, empty, SPACING)
    assert m["empty"] == "both"
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (0, 0, 0, 210)
    for key in ("dice", "jaccard", "precision", "recall", "surface_dice"):
        assert m[key] == 1.0, key
    assert (m["hd_mm"], m["hd95_mm"], m["assd_mm"]) == (0.0, 0.0, 0.0)
    assert m["specificity"] == m["accuracy"] == 1.0
    assert m["volume_truth_ml"] == m["volume_prediction_ml"] == m["volume_difference_ml"] == 0.0


def test_empty_prediction_is_a_failure_with_missing_distances():
    truth = cube((8, 8, 8), (2, 2, 2), 3)
    m = structure_metrics(np.zeros_like(truth), truth, SPACING)
    assert m["empty"] == "prediction"
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (0, 0, 27, 512 - 27)
    assert (m["dice"], m["jaccard"], m["surface_dice"]) == (0.0, 0.0, 0.0)
    assert m["recall"] == 0.0
    assert m["precision"] is None
    assert m["hd_mm"] is None and m["hd95_mm"] is None and m["assd_mm"] is None
    assert m["specificity"] == 1.0
    assert m["accuracy"] == pytest.approx((512 - 27) / 512)
    assert m["volume_difference_ml"] == pytest.approx(-27 * 2.5 * 0.64 / 1000)


def test_empty_truth_is_a_failure_with_missing_distances():
    prediction = cube((8, 8, 8), (2, 2, 2), 3)
    m = structure_metrics(prediction, np.zeros_like(prediction), SPACING)
    assert m["empty"] == "truth"
    assert (m["tp"], m["fp"], m["fn"]) == (0, 27, 0)
    assert (m["dice"], m["jaccard"], m["surface_dice"]) == (0.0, 0.0, 0.0)
    assert m["precision"] == 0.0
    assert m["recall"] is None
    assert m["hd_mm"] is None and m["hd95_mm"] is None and m["assd_mm"] is None
    assert m["specificity"] == pytest.approx((512 - 27) / 512)


def test_specificity_is_none_when_truth_fills_the_volume():
    full = np.ones((3, 4, 5), dtype=bool)
    m = structure_metrics(full, full, SPACING)
    assert m["tn"] == 0 and m["fp"] == 0
    assert m["specificity"] is None
    assert m["accuracy"] == 1.0
    assert m["hd_mm"] == 0.0


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(4, 5, 6\).*\(4, 5, 7\)"):
        structure_metrics(np.zeros((4, 5, 6)), np.zeros((4, 5, 7)), SPACING)


def test_implementation_names_monai_and_its_version():
    import monai

    assert f"MONAI {monai.__version__}" in IMPLEMENTATION
