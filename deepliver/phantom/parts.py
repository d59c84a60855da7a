"""Generic paintable parts: a solid organ in nested layers, and a hollow gas/fluid organ."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from deepliver.phantom.refine import refined_sdf
from deepliver.phantom.render import Canvas
from deepliver.phantom.shapes import Points
from deepliver.phantom.tissues import Tissue


class Shape(Protocol):
    def bounds(self, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]: ...

    def sdf(self, p: Points) -> np.ndarray: ...


@dataclass(frozen=True)
class Layered:
    """A shape painted as nested layers: each (depth_mm, tissue) fills where sdf < -depth.

    ``over`` lists the tissues the part may replace (None: any), so organs painted later nestle
    against earlier ones instead of cutting through them.
    """

    shape: Shape
    layers: tuple[tuple[float, int], ...]
    label: int = 0
    over: tuple[int, ...] | None = (Tissue.FAT,)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.shape.bounds()

    def paint(self, p: Points, canvas: Canvas) -> None:
        distance = refined_sdf(self.shape, p, [-depth for depth, _ in self.layers])
        where = None if self.over is None else canvas.is_tissue(*self.over)
        for depth, tissue in self.layers:
            canvas.put(distance < -np.float32(depth), tissue, self.label, where=where)


@dataclass(frozen=True)
class Hollow:
    """Stomach or bowel: a wall around contents, gas floating anterior (-y, patient supine)."""

    shape: Shape
    wall_mm: float
    gas_fraction: float  # 0 = all fluid, 1 = all gas

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.shape.bounds()

    def paint(self, p: Points, canvas: Canvas) -> None:
        distance = self.shape.sdf(p)
        where = canvas.is_tissue(Tissue.FAT)
        canvas.put(distance < 0, Tissue.GUT_WALL, where=where)
        low, high = self.shape.bounds()
        level = np.float32(low[1] + self.gas_fraction * (high[1] - low[1]))
        contents = np.where(p.y < level, np.uint8(Tissue.GUT_GAS), np.uint8(Tissue.GUT_FLUID))
        canvas.put(distance < -np.float32(self.wall_mm), contents, where=where)
