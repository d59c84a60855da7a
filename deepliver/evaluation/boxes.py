"""Scoring a detector's 3D lesion boxes against true labels, per slice and per lesion, and the
tumor mask its boxes imply (so a detector can be set beside the U-Nets on Dice, as the seed
project did, clearly labelled as box-derived).

Per slice: on each axial slice of the truth's grid (in patient order), the true boxes are the
tumor components' boxes (OpenCV contours) and the predicted boxes are the 3D boxes cut by that
slice; matched one to one at IoU >= 0.5. Per lesion: 3D boxes against the true lesions' boxes
in LPS millimetres, matched one to one at IoU >= 0.5
(:func:`deepliver.detection.metrics.match_lesions`).
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import box_iou

from deepliver.detection.boxes import boxes_from_mask
from deepliver.detection.metrics import greedy_matches, match_lesions
from deepliver.volume import Grid, Volume

BOX_IOU = 0.5  # per slice and per 3D lesion, as the evaluation issue asks
BOX_MASK_SUFFIX = " (box mask)"


def index_boxes(detections, grid: Grid) -> np.ndarray:
    """The detections' LPS boxes as (n, 6) continuous index boxes (i0, j0, k0, i1, j1, k1) at
    voxel edges: the index-space box around the LPS box's eight corners."""
    result = []
    for found in detections:
        low, high = np.array(found.box_min_lps_mm), np.array(found.box_max_lps_mm)
        corners = np.array([[(low, high)[b][a] for a, b in enumerate(bits)] for bits in _BITS])
        ijk = grid.physical_to_index(corners) + 0.5  # voxel centres -> edges
        result.append(np.concatenate([ijk.min(axis=0), ijk.max(axis=0)]))
    return np.array(result, dtype=np.float64).reshape(-1, 6)


_BITS = [(a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1)]


def box_mask(detections, grid: Grid, liver: np.ndarray) -> np.ndarray:
    """Tumor = inside a detection's box and inside the liver (bool, (z, y, x))."""
    mask = np.zeros(grid.shape, dtype=bool)
    for i0, j0, k0, i1, j1, k1 in index_boxes(detections, grid):
        lo = np.floor([k0, j0, i0]).astype(int).clip(0)
        hi = np.minimum(np.ceil([k1, j1, i1]).astype(int), grid.shape)
        mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = True
    return mask & np.asarray(liver, dtype=bool)


def box_rows(model: str, case: str, detections, truth: Volume, ct: Volume) -> list[dict]:
    """{"model", "case", "level" ("slice" | "lesion"), "tp", "fp", "fn"} for one case."""
    from deepliver.inference.lesions import lesion_table

    lesions = lesion_table(truth, ct)
    true_3d = np.array([[*t.box_min_lps, *t.box_max_lps] for t in lesions]).reshape(-1, 6)
    found_3d = np.array([[*d.box_min_lps_mm, *d.box_max_lps_mm] for d in detections])
    found, false_positives = match_lesions(found_3d.reshape(-1, 6), true_3d, BOX_IOU)
    lesion = {"tp": int(found.sum()), "fp": false_positives, "fn": int((~found).sum())}
    return [
        {
            "model": model,
            "case": case,
            "level": "slice",
            **_slice_counts(detections, truth.patient_ordered()),  # axial slices
        },
        {"model": model, "case": case, "level": "lesion", **lesion},
    ]


def _slice_counts(detections, truth: Volume) -> dict:
    boxes = index_boxes(detections, truth.grid)
    tumor = truth.array == 2
    tp = fp = fn = 0
    for k in range(truth.shape[0]):
        true = np.array(
            [[b.xmin, b.ymin, b.xmax, b.ymax] for b in boxes_from_mask(tumor[k])], np.float64
        ).reshape(-1, 4)
        cut = boxes[(boxes[:, 2] < k + 1) & (boxes[:, 5] > k)][:, [0, 1, 3, 4]]
        hits = _one_to_one(cut, true)
        tp, fp, fn = tp + hits, fp + len(cut) - hits, fn + len(true) - hits
    return {"tp": tp, "fp": fp, "fn": fn}


def _one_to_one(predicted: np.ndarray, truth: np.ndarray) -> int:
    if len(predicted) == 0 or len(truth) == 0:
        return 0
    ious = box_iou(torch.from_numpy(predicted), torch.from_numpy(truth)).numpy()
    return int(greedy_matches(ious, BOX_IOU).sum())
