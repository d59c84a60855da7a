"""The YOLO-style detector's loss: objectness on every cell (slices without lesions teach it
what a negative looks like), and box (generalised IoU) and class terms where a lesion is.

A true box is given, as in YOLOv5, to every anchor whose shape is within ``ANCHOR_RATIO`` of
its own, on every scale, in the cell holding its centre and the two neighbouring cells nearest
to it: several positives per lesion instead of one, which is what lets a small detector learn
lesions from a few thousand slices. A positive's objectness target is the IoU its box reaches
(so scores rank boxes by how well they fit). Predictions that already overlap a true box well
(IoU > 0.5) but are not assigned to it are not punished as negatives.

Objectness is one mean over every scored cell, positives and negatives alike, as in YOLOv5:
with a separate mean for the few positives, each positive cell weighed about a hundred negative
ones, and even on 32 slices it was trained on, the detector still scored empty slices up to 0.9
(training-set AP50 0.54, against 0.95 with one mean). ``OBJECTNESS_WEIGHT`` brings that mean,
tiny per cell, up to the size of the box term.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import box_iou, generalized_box_iou_loss

from deepliver.detection.networks import STRIDES, YoloDetector

IGNORE_IOU = 0.5
ANCHOR_RATIO = 4.0
BOX_WEIGHT = 2.0
OBJECTNESS_WEIGHT = 20.0


def yolo_loss(
    model: YoloDetector, outputs: list[torch.Tensor], targets: list[torch.Tensor]
) -> torch.Tensor:
    """``targets``: per image a (n, 4) float tensor of boxes in pixels (n may be 0)."""
    outputs = [o.float() for o in outputs]  # under mixed precision (GPU) the heads give float16
    boxes, _ = model.decode(outputs)
    objectness = torch.cat([o[:, :, 4].reshape(o.shape[0], -1) for o in outputs], 1)
    tumor_logit = torch.cat([o[:, :, 5].reshape(o.shape[0], -1) for o in outputs], 1)
    positive = torch.zeros_like(objectness, dtype=torch.bool)
    ignore = torch.zeros_like(positive)
    matched_boxes = torch.zeros(*objectness.shape, 4, device=objectness.device)
    for image, truth in enumerate(targets):
        if truth.numel() == 0:
            continue
        ignore[image] = box_iou(boxes[image].detach(), truth).max(dim=1).values > IGNORE_IOU
        for index, box in assign(model, outputs, truth):
            positive[image, index] = True
            matched_boxes[image, index] = box
    predicted, wanted = boxes[positive], matched_boxes[positive]
    wanted_objectness = torch.zeros_like(objectness)
    wanted_objectness[positive] = torch.diag(box_iou(predicted.detach(), wanted)).clamp(min=0.0)
    scored = positive | ~ignore
    loss = OBJECTNESS_WEIGHT * F.binary_cross_entropy_with_logits(
        objectness[scored], wanted_objectness[scored]
    )
    if not positive.any():
        return loss
    loss_box = generalized_box_iou_loss(predicted, wanted, reduction="mean")
    loss_class = F.binary_cross_entropy_with_logits(
        tumor_logit[positive], torch.ones_like(tumor_logit[positive])
    )
    return loss + BOX_WEIGHT * loss_box + loss_class


def assign(model: YoloDetector, outputs: list[torch.Tensor], truth: torch.Tensor):
    """(flat cell index, true box) pairs: the predictions responsible for each true box."""
    wh = (truth[:, 2:] - truth[:, :2]).clamp(min=1.0)
    centres = (truth[:, :2] + truth[:, 2:]) / 2
    pairs = []
    for level, (out, offset) in enumerate(zip(outputs, _level_offsets(outputs), strict=True)):
        _, _, _, h, w = out.shape
        ratio = wh[:, None, :] / model.anchors[level][None]
        fits = torch.max(ratio, 1.0 / ratio).amax(dim=2) < ANCHOR_RATIO  # (boxes, anchors)
        grid = centres / STRIDES[level]
        for box, fit, (x, y) in zip(truth, fits, grid.tolist(), strict=True):
            gx, gy = int(x), int(y)
            cells = {(gx, gy), (gx + (1 if x - gx > 0.5 else -1), gy)}
            cells.add((gx, gy + (1 if y - gy > 0.5 else -1)))
            for anchor in torch.nonzero(fit).flatten().tolist():
                for cx, cy in cells:
                    if 0 <= cx < w and 0 <= cy < h:
                        pairs.append((offset + (anchor * h + cy) * w + cx, box))
    return pairs


def _level_offsets(outputs: list[torch.Tensor]) -> list[int]:
    """Where each level's cells start in the flattened (anchor, y, x) order of ``decode``."""
    offsets, total = [], 0
    for out in outputs:
        _, anchors, _, h, w = out.shape
        offsets.append(total)
        total += anchors * h * w
    return offsets
