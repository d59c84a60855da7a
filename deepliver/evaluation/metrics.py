"""Voxel, volume and surface metrics of one structure (liver or tumor) in one case.

Masks are (z, y, x) arrays, non-zero = inside; spacing is mm per axis (z, y, x). Every distance
is in millimetres from that spacing, never in voxels.

Counts: tp, fp, fn, tn are voxel counts. dice = 2tp / (2tp + fp + fn), jaccard = tp / (tp + fp +
fn), precision = tp / (tp + fp), recall (sensitivity) = tp / (tp + fn), specificity = tn / (tn +
fp), accuracy = (tp + tn) / all voxels. Volumes are in mL; volume_difference_ml is prediction
minus truth.

Surfaces follow MONAI: a surface voxel is a mask voxel with one of its 6 face neighbours outside
the mask or outside the array (``get_mask_edges``, binary erosion XOR mask), and each surface
voxel's distance is the exact Euclidean distance in mm, centre to centre, to the nearest surface
voxel of the other mask (``get_surface_distance``). From the two directed distance sets:

- hd_mm: Hausdorff distance, the largest distance of either direction;
- hd95_mm: the larger of the two directed 95th percentiles (linear interpolation), as MONAI's
  ``compute_hausdorff_distance(percentile=95)``;
- assd_mm: the mean of all distances of both directions pooled, as MONAI's
  ``compute_average_surface_distance(symmetric=True)``;
- surface_dice: normalised surface Dice at tolerance_mm, the share of the surface voxels of both
  masks that lie within the tolerance of the other surface, as MONAI's ``compute_surface_dice``.

Empty masks: both empty is a perfect answer (dice, jaccard, precision, recall and surface_dice
1, distances 0). Exactly one empty is a failure: dice, jaccard and surface_dice 0; an empty
prediction has recall 0 and precision None, an empty truth has precision 0 and recall None;
distances are None (missing, never 0: a missed tumor must never score a perfect distance).
Specificity and accuracy always come from the counts (None when their denominator is 0).
"""

from __future__ import annotations

from importlib.metadata import version

import numpy as np

from deepliver.inference.postprocess import spacing_zyx as as_spacing_zyx
from deepliver.volume import Box

PERCENTILE = 95.0

IMPLEMENTATION = (
    f"Surface distances from MONAI {version('monai')} (monai.metrics.utils get_mask_edges and "
    "get_surface_distance, computed once per case inside the masks' bounding box), voxel counts "
    "with numpy."
)


def structure_metrics(
    prediction: np.ndarray, truth: np.ndarray, spacing_zyx, tolerance_mm: float = 2.0
) -> dict:
    """All metrics of one structure in one case, as one flat dict (see the module docstring)."""
    prediction = np.asarray(prediction) != 0
    truth = np.asarray(truth) != 0
    if prediction.shape != truth.shape:
        raise ValueError(
            f"prediction shape {prediction.shape} differs from truth shape {truth.shape}"
        )
    spacing = as_spacing_zyx(spacing_zyx)
    counts = _counts(prediction, truth)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    return {
        **counts,
        **_overlap(counts),
        **_surface(prediction, truth, spacing, tolerance_mm),
        "volume_truth_ml": (counts["tp"] + counts["fn"]) * voxel_ml,
        "volume_prediction_ml": (counts["tp"] + counts["fp"]) * voxel_ml,
        "volume_difference_ml": (counts["fp"] - counts["fn"]) * voxel_ml,
        "empty": _empty(counts),
    }


def _counts(prediction: np.ndarray, truth: np.ndarray) -> dict:
    """Voxel counts; tn from the total, so the big background is never counted voxel by voxel."""
    tp = int(np.count_nonzero(prediction & truth))
    fp = int(np.count_nonzero(prediction)) - tp
    fn = int(np.count_nonzero(truth)) - tp
    return {"tp": tp, "fp": fp, "fn": fn, "tn": int(prediction.size) - tp - fp - fn}


def _empty(counts: dict) -> str:
    prediction_empty = counts["tp"] + counts["fp"] == 0
    truth_empty = counts["tp"] + counts["fn"] == 0
    if prediction_empty and truth_empty:
        return "both"
    if prediction_empty:
        return "prediction"
    return "truth" if truth_empty else "none"


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _overlap(counts: dict) -> dict:
    """Overlap ratios; two empty masks agree perfectly, so they score 1, not None."""
    tp, fp, fn, tn = counts["tp"], counts["fp"], counts["fn"], counts["tn"]
    both_empty = tp + fp + fn == 0
    return {
        "dice": 1.0 if both_empty else 2 * tp / (2 * tp + fp + fn),
        "jaccard": 1.0 if both_empty else tp / (tp + fp + fn),
        "precision": 1.0 if both_empty else _ratio(tp, tp + fp),
        "recall": 1.0 if both_empty else _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "accuracy": _ratio(tp + tn, tp + fp + fn + tn),
    }


def _surface(prediction: np.ndarray, truth: np.ndarray, spacing, tolerance_mm: float) -> dict:
    """Distances and surface Dice, with the empty-mask rules of the module docstring."""
    prediction_any, truth_any = bool(prediction.any()), bool(truth.any())
    if not prediction_any and not truth_any:
        return {"hd_mm": 0.0, "hd95_mm": 0.0, "assd_mm": 0.0, "surface_dice": 1.0}
    if not prediction_any or not truth_any:
        return {"hd_mm": None, "hd95_mm": None, "assd_mm": None, "surface_dice": 0.0}
    to_truth, to_prediction = surface_distances(prediction, truth, spacing)
    pooled = np.concatenate([to_truth, to_prediction])
    return {
        "hd_mm": float(pooled.max()),
        "hd95_mm": float(
            max(np.percentile(to_truth, PERCENTILE), np.percentile(to_prediction, PERCENTILE))
        ),
        "assd_mm": float(pooled.mean(dtype=np.float64)),
        "surface_dice": float(np.count_nonzero(pooled <= tolerance_mm) / pooled.size),
    }


def surface_distances(
    prediction: np.ndarray, truth: np.ndarray, spacing_zyx
) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each prediction surface voxel to the truth surface, and back.

    Computed once for all surface metrics: MONAI's compute_* functions each find the edges and
    both directed distances again, four times the work. Both masks are cropped to their union's
    bounding box plus one voxel first; distances are unchanged by the crop, because the margin
    keeps every voxel that was inside the array off the crop's border (a voxel on the array's
    border stays on the crop's border), so the same voxels are surface voxels.
    Both masks must be non-empty.
    """
    from monai.metrics.utils import get_mask_edges, get_surface_distance  # torch: slow import

    prediction = np.asarray(prediction, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    box = Box.around(prediction | truth, margin_voxels=(1, 1, 1))
    if box is None or not prediction.any() or not truth.any():
        raise ValueError("surface distances need two non-empty masks")
    spacing = as_spacing_zyx(spacing_zyx)
    edges_prediction, edges_truth = get_mask_edges(
        prediction[box.slices], truth[box.slices], crop=False
    )
    return (
        np.asarray(get_surface_distance(edges_prediction, edges_truth, spacing=spacing)),
        np.asarray(get_surface_distance(edges_truth, edges_prediction, spacing=spacing)),
    )
