"""Detection metrics: per-slice average precision at an IoU, and 3D lesion recall with false
positives per scan, both with the matching rules written here."""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import box_iou

LESION_IOU = 0.3  # a 3D box finds a lesion when it overlaps the lesion's box this much


def average_precision(
    detections: list[tuple[np.ndarray, np.ndarray]],
    truths: list[np.ndarray],
    iou_threshold: float = 0.5,
) -> float | None:
    """AP over images: detections pooled by score, each matched greedily to an unmatched true
    box of its image with IoU >= the threshold; area under the precision envelope (all points,
    as Pascal VOC since 2010). None when there is no true box at all."""
    total = sum(len(t) for t in truths)
    if total == 0:
        return None
    pooled = [
        (float(score), image, box)
        for image, (boxes, scores) in enumerate(detections)
        for box, score in zip(boxes, scores, strict=True)
    ]
    pooled.sort(key=lambda item: -item[0])
    used = [np.zeros(len(t), dtype=bool) for t in truths]
    hits = np.zeros(len(pooled))
    for number, (_, image, box) in enumerate(pooled):
        truth = truths[image]
        if len(truth) == 0:
            continue
        ious = box_iou(torch.as_tensor(box[None], dtype=torch.float64), torch.as_tensor(truth))[0]
        ious[torch.from_numpy(used[image])] = -1
        best = int(torch.argmax(ious))
        if float(ious[best]) >= iou_threshold:
            used[image][best] = True
            hits[number] = 1
    true_positives = np.cumsum(hits)
    recall = true_positives / total
    precision = true_positives / np.arange(1, len(pooled) + 1)
    recall = np.concatenate([[0.0], recall, [recall[-1] if len(recall) else 0.0]])
    precision = np.concatenate([[1.0], precision, [0.0]])
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum(np.diff(recall) * envelope[1:]))


def box_iou_3d(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of axis-aligned 3D boxes (n, 6) and (m, 6) as (x0, y0, z0, x1, y1, z1)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    low = np.maximum(a[:, None, :3], b[None, :, :3])
    high = np.minimum(a[:, None, 3:], b[None, :, 3:])
    inter = np.prod(np.clip(high - low, 0, None), axis=2)
    volume_a = np.prod(a[:, 3:] - a[:, :3], axis=1)
    volume_b = np.prod(b[:, 3:] - b[:, :3], axis=1)
    return inter / (volume_a[:, None] + volume_b[None, :] - inter)


def greedy_matches(ious: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Which columns (truths) get a row (prediction), one to one, best IoU first, IoU at least
    the threshold: bool per column of the (predictions, truths) IoU matrix."""
    ious = np.array(ious, dtype=np.float64, copy=True).reshape(-1, np.shape(ious)[-1])
    found = np.zeros(ious.shape[1], dtype=bool)
    while ious.size and ious.max() >= iou_threshold:
        p, t = np.unravel_index(int(np.argmax(ious)), ious.shape)
        found[t] = True
        ious[p, :] = -1
        ious[:, t] = -1
    return found


def match_lesions(
    predicted: np.ndarray, truth: np.ndarray, iou_threshold: float = LESION_IOU
) -> tuple[np.ndarray, int]:
    """(which true lesions were found (bool per lesion), false positives) for 3D boxes, matched
    one to one, best IoU first."""
    if len(truth) == 0 or len(predicted) == 0:
        return np.zeros(len(truth), dtype=bool), len(predicted)
    found = greedy_matches(box_iou_3d(predicted, truth), iou_threshold)
    return found, len(predicted) - int(found.sum())


def lesion_recall(
    predicted: np.ndarray, truth: np.ndarray, iou_threshold: float = LESION_IOU
) -> tuple[int, int, int]:
    """(found, missed, false positives) of 3D boxes against true lesion boxes."""
    found, false_positives = match_lesions(predicted, truth, iou_threshold)
    return int(found.sum()), len(truth) - int(found.sum()), false_positives
