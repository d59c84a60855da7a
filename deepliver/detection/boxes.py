"""Tumor boxes on one axial slice, in pixel-edge coordinates.

A box spans pixel edges: ``xmin = x``, ``xmax = x + w`` for columns ``x .. x + w - 1``, so a
one-pixel lesion is a 1x1 box (never zero area), as torchvision detectors expect.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Box2D:
    xmin: float
    ymin: float
    xmax: float
    ymax: float

    @property
    def width(self) -> float:
        return self.xmax - self.xmin

    @property
    def height(self) -> float:
        return self.ymax - self.ymin

    @property
    def area(self) -> float:
        return self.width * self.height


def boxes_from_mask(mask2d: np.ndarray) -> list[Box2D]:
    """One box per connected component (8-connected outer contours), sorted top-left first."""
    mask = np.ascontiguousarray(np.asarray(mask2d) > 0, dtype=np.uint8)
    if mask.ndim != 2:
        raise ValueError(f"boxes_from_mask needs a 2D mask, got shape {mask.shape}")
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    rects = sorted((cv2.boundingRect(contour) for contour in contours), key=lambda r: (r[1], r[0]))
    return [Box2D(x, y, x + w, y + h) for x, y, w, h in rects]
