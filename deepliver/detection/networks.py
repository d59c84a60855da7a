"""The two detectors, on one small CNN with a feature pyramid, sized for a CPU.

Both see 2.5D slices of the liver crop (the slice and its neighbours as 3 channels, windowed to
0..1) padded to a square; both return, per image, boxes (x0, y0, x1, y1 in pixel-edge
coordinates), scores and labels (1 = tumor), as torchvision detectors do.

- :func:`build_fasterrcnn`: torchvision's ``FasterRCNN`` (region proposals, RoIAlign, box head)
  on the pyramid from stride 4, with anchors and a box head scaled down to lesions of 5-80 mm.
  RoIAlign takes a box under 112 pixels (168 mm) from the finest level, so a lesion of 10-20 mm
  (7-13 pixels) is pooled from stride 4 rather than from 1-2 cells of stride 8.
- :class:`YoloDetector`: single stage, YOLO-style: three grid scales (strides 8, 16, 32),
  three anchors each, objectness, class score and box per anchor (YOLOv5's bounded box
  decoding), non-maximum suppression.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import MultiScaleRoIAlign, batched_nms

BACKBONE_STAGES = 4  # stages 1 to 4, strides 4, 8, 16, 32 (stage s: stride 2 ** (s + 1))


def pyramid_stages(first_stage: int) -> range:
    """The backbone stages a pyramid from stage ``first_stage`` takes its maps from."""
    return range(first_stage, BACKBONE_STAGES + 1)


def pyramid_levels(first_stage: int) -> tuple[str, ...]:
    """The names of the pyramid's maps from backbone stage ``first_stage`` to the last."""
    return tuple(str(n) for n in range(len(pyramid_stages(first_stage))))


# YOLO's maps: backbone stages 2 to 4, strides 8, 16, 32; Faster R-CNN's start at stage 1.
YOLO_FIRST_STAGE = 2
PYRAMID_LEVELS = pyramid_levels(YOLO_FIRST_STAGE)
STRIDES = tuple(2 ** (stage + 1) for stage in pyramid_stages(YOLO_FIRST_STAGE))


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class _Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(channels, channels), _conv(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class TinyBackbone(nn.Module):
    """Stem (stride 2) and four stages that halve the size: strides 4, 8, 16, 32."""

    def __init__(self, in_channels: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        self.stem = _conv(in_channels, widths[0] // 2, stride=2)
        previous = widths[0] // 2
        for number, width in enumerate(widths, start=1):
            stage = nn.Sequential(_conv(previous, width, stride=2), _Residual(width))
            self.add_module(f"stage{number}", stage)
            previous = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # only used through the FPN wrapper
        for module in self.children():
            x = module(x)
        return x


def feature_pyramid(
    in_channels: int, widths: tuple[int, ...], out_channels: int, first_stage: int = 2
):
    """Backbone + FPN: feature maps "0", "1", ... from stage ``first_stage`` (stage 1: stride 4,
    stage 2: stride 8) to stage 4 (stride 32), and "pool" at 64."""
    if len(widths) != BACKBONE_STAGES:
        raise ValueError(f"the backbone has {BACKBONE_STAGES} stages, got widths {widths}")
    body = TinyBackbone(in_channels, tuple(widths))
    stages = pyramid_stages(first_stage)
    return BackboneWithFPN(
        body,
        return_layers={
            f"stage{stage}": name
            for stage, name in zip(stages, pyramid_levels(first_stage), strict=True)
        },
        in_channels_list=[widths[stage - 1] for stage in stages],
        out_channels=out_channels,
    )


def build_fasterrcnn(
    in_channels: int, widths: tuple[int, ...], size: int, out_channels: int = 64
) -> FasterRCNN:
    """A compact Faster R-CNN for ``size`` x ``size`` inputs (no resizing: scale stays 1)."""
    backbone = feature_pyramid(in_channels, widths, out_channels, first_stage=1)
    anchors = AnchorGenerator(  # strides 4, 8, 16, 32, 64
        sizes=((6, 10), (14, 20), (28, 40), (56, 80), (112, 160)),
        aspect_ratios=((0.5, 1.0, 2.0),) * 5,
    )
    return FasterRCNN(
        backbone,
        num_classes=None,
        min_size=size,
        max_size=size,
        image_mean=[0.0] * in_channels,
        image_std=[1.0] * in_channels,
        rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=600,
        rpn_post_nms_top_n_train=300,
        rpn_pre_nms_top_n_test=300,
        rpn_post_nms_top_n_test=100,
        rpn_batch_size_per_image=128,
        box_roi_pool=MultiScaleRoIAlign(list(pyramid_levels(1)), output_size=7, sampling_ratio=2),
        box_head=TwoMLPHead(out_channels * 7 * 7, 256),
        box_predictor=FastRCNNPredictor(256, 2),
        box_batch_size_per_image=128,
        box_score_thresh=0.05,
        box_detections_per_img=20,
    )


def build_detector(card) -> nn.Module:
    """The detector a model card describes (``channels``: the backbone's stage widths)."""
    widths = tuple(int(c) for c in card.channels)
    if card.architecture == "fasterrcnn":
        return build_fasterrcnn(card.in_channels, widths, int(card.roi_size[0]))
    return YoloDetector(card.in_channels, widths)


# Anchor (width, height) in pixels per scale: the model grid is 1.5 mm, lesions 5-80 mm.
YOLO_ANCHORS = (
    ((5.0, 5.0), (8.0, 8.0), (12.0, 12.0)),
    ((16.0, 16.0), (24.0, 24.0), (34.0, 34.0)),
    ((46.0, 46.0), (64.0, 64.0), (90.0, 90.0)),
)


class YoloDetector(nn.Module):
    """Single-stage detector: per pyramid level and anchor, (tx, ty, tw, th, objectness, tumor).

    ``forward(images)`` returns the raw head outputs, one (batch, anchors, 6, h, w) tensor per
    level, for the loss; :meth:`detect` decodes them into boxes after NMS.
    """

    def __init__(self, in_channels: int, widths: tuple[int, ...], out_channels: int = 64):
        super().__init__()
        self.pyramid = feature_pyramid(
            in_channels, widths, out_channels, first_stage=YOLO_FIRST_STAGE
        )
        self.heads = nn.ModuleList(
            nn.Sequential(_conv(out_channels, out_channels), nn.Conv2d(out_channels, 3 * 6, 1))
            for _ in STRIDES
        )
        self.register_buffer("anchors", torch.tensor(YOLO_ANCHORS), persistent=False)
        for head in self.heads:  # start with a low objectness: most cells hold no lesion
            nn.init.constant_(head[-1].bias.view(3, 6)[:, 4], -4.0)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        features = self.pyramid(images)
        outputs = []
        for level, head in zip(PYRAMID_LEVELS, self.heads, strict=True):
            out = head(features[level])
            n, _, h, w = out.shape
            outputs.append(out.view(n, 3, 6, h, w))
        return outputs

    def decode(self, outputs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Boxes (batch, n, 4) in pixels and scores (batch, n) = objectness x tumor."""
        boxes, scores = [], []
        for raw, stride, anchors in zip(outputs, STRIDES, self.anchors, strict=True):
            n, a, _, h, w = raw.shape
            ys, xs = torch.meshgrid(
                torch.arange(h, device=raw.device),
                torch.arange(w, device=raw.device),
                indexing="ij",
            )
            # YOLOv5's bounded form: a centre up to half a cell beyond its own cell (so the
            # neighbouring cells the loss also makes responsible can reach it), a size from 0
            # to 4 times the anchor (no exp to blow up early in training).
            cx = (2.0 * torch.sigmoid(raw[:, :, 0]) - 0.5 + xs) * stride
            cy = (2.0 * torch.sigmoid(raw[:, :, 1]) - 0.5 + ys) * stride
            bw = anchors[:, 0].view(1, a, 1, 1) * (2.0 * torch.sigmoid(raw[:, :, 2])) ** 2
            bh = anchors[:, 1].view(1, a, 1, 1) * (2.0 * torch.sigmoid(raw[:, :, 3])) ** 2
            box = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], dim=-1)
            boxes.append(box.reshape(n, -1, 4))
            score = torch.sigmoid(raw[:, :, 4]) * torch.sigmoid(raw[:, :, 5])
            scores.append(score.reshape(n, -1))
        return torch.cat(boxes, 1), torch.cat(scores, 1)

    @torch.no_grad()
    def detect(
        self, images: torch.Tensor, score_threshold: float = 0.05, iou_threshold: float = 0.45
    ) -> list[dict[str, torch.Tensor]]:
        """torchvision-style results: per image {"boxes", "scores", "labels"} after NMS."""
        boxes, scores = self.decode(self(images))
        size = images.shape[-1]
        results = []
        for image_boxes, image_scores in zip(boxes, scores, strict=True):
            keep = image_scores >= score_threshold
            image_boxes, image_scores = image_boxes[keep].clamp(0, size), image_scores[keep]
            labels = torch.ones_like(image_scores, dtype=torch.int64)
            kept = batched_nms(image_boxes, image_scores, labels, iou_threshold)[:20]
            results.append(
                OrderedDict(boxes=image_boxes[kept], scores=image_scores[kept], labels=labels[kept])
            )
        return results
