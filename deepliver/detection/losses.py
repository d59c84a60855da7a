"""The YOLO-style detector's loss: objectness on every cell (slices without lesions teach it
what a negative looks like), and box (generalised IoU) and class terms where a lesion is.

Each true box is given to the one anchor, over all scales, whose shape fits it best, in the grid
cell holding its centre. Predictions that already overlap a true box well (IoU > 0.5) but are
not its assigned anchor are not punished as negatives, as in YOLOv3.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import box_iou, generalized_box_iou_loss

from deepliver.detection.networks import STRIDES, YoloDetector

IGNORE_IOU = 0.5
BOX_WEIGHT = 2.0


def _shape_iou(wh: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """IoU of boxes and anchors as if they shared a centre: (boxes, anchors)."""
    inter = torch.min(wh[:, None, 0], anchors[None, :, 0]) * torch.min(
        wh[:, None, 1], anchors[None, :, 1]
    )
    union = wh[:, None, 0] * wh[:, None, 1] + anchors[None, :, 0] * anchors[None, :, 1] - inter
    return inter / union


def yolo_loss(
    model: YoloDetector, outputs: list[torch.Tensor], targets: list[torch.Tensor]
) -> torch.Tensor:
    """``targets``: per image a (n, 4) float tensor of boxes in pixels (n may be 0)."""
    all_anchors = model.anchors.reshape(-1, 2)
    boxes, _ = model.decode(outputs)
    objectness = torch.cat([o[:, :, 4].reshape(o.shape[0], -1) for o in outputs], 1)
    tumor_logit = torch.cat([o[:, :, 5].reshape(o.shape[0], -1) for o in outputs], 1)
    positive = torch.zeros_like(objectness, dtype=torch.bool)
    ignore = torch.zeros_like(positive)
    matched_boxes = torch.zeros(*objectness.shape, 4, device=objectness.device)
    offsets = _level_offsets(outputs)
    for image, truth in enumerate(targets):
        if truth.numel() == 0:
            continue
        ignore[image] = box_iou(boxes[image].detach(), truth).max(dim=1).values > IGNORE_IOU
        wh = (truth[:, 2:] - truth[:, :2]).clamp(min=1.0)
        best = _shape_iou(wh, all_anchors).argmax(dim=1)
        centres = (truth[:, :2] + truth[:, 2:]) / 2
        for box, choice, centre in zip(truth, best.tolist(), centres, strict=True):
            level, anchor = divmod(choice, 3)
            _, _, _, h, w = outputs[level].shape
            gx = int(centre[0].item() // STRIDES[level])
            gy = int(centre[1].item() // STRIDES[level])
            gx, gy = min(max(gx, 0), w - 1), min(max(gy, 0), h - 1)
            index = offsets[level] + (anchor * h + gy) * w + gx
            positive[image, index] = True
            matched_boxes[image, index] = box
    negative = ~positive & ~ignore
    target = positive.float()
    loss_negative = F.binary_cross_entropy_with_logits(objectness[negative], target[negative])
    if not positive.any():
        return loss_negative
    loss_positive = F.binary_cross_entropy_with_logits(objectness[positive], target[positive])
    loss_box = generalized_box_iou_loss(boxes[positive], matched_boxes[positive], reduction="mean")
    loss_class = F.binary_cross_entropy_with_logits(
        tumor_logit[positive], torch.ones_like(tumor_logit[positive])
    )
    return loss_negative + loss_positive + BOX_WEIGHT * loss_box + loss_class


def _level_offsets(outputs: list[torch.Tensor]) -> list[int]:
    """Where each level's cells start in the flattened (anchor, y, x) order of ``decode``."""
    offsets, total = [], 0
    for out in outputs:
        _, anchors, _, h, w = out.shape
        offsets.append(total)
        total += anchors * h * w
    return offsets
