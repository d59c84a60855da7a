"""Liver volume control: adult livers hold 1,200-1,800 mL whatever the build (ct-facts.md).

The liver's shape is clipped to the body cavity and carved by organs painted before it, so its
painted volume cannot be read off its radii. Instead the anatomy is painted on a coarse grid,
the labelled volume measured, and the liver rescaled until that volume meets a target.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from deepliver.phantom.render import paint_parts
from deepliver.volume import Grid

TARGET_ML = (1300.0, 1700.0)
TOLERANCE = 0.05  # relative; the coarse grid itself is good to a few percent
COARSE_MM = 5.0
MAX_PASSES = 4


def fit_liver_scale(
    build: Callable[[float], tuple[list, object]], target_ml: float
) -> tuple[float, list, object]:
    """The liver scale, parts and liver whose painted liver volume is about ``target_ml``.

    ``build(scale)`` draws the same patient (same random draws) with the liver scaled. Volume
    grows about as scale ** k with k <= 3 (clipping slows it), so each pass refits k.
    """
    scale, exponent = 1.0, 2.0  # clipped livers grow slower than scale ** 3
    previous: tuple[float, float] | None = None
    parts, liver = build(scale)
    for _ in range(MAX_PASSES):
        volume = painted_liver_ml(parts, liver)
        if abs(volume / target_ml - 1) <= TOLERANCE:
            break
        if previous is not None and previous[0] != scale and previous[1] != volume:
            fitted = np.log(volume / previous[1]) / np.log(scale / previous[0])
            exponent = float(np.clip(fitted, 1.0, 3.0))
        previous = (scale, volume)
        wanted = float(np.clip(scale * (target_ml / volume) ** (1 / exponent), 0.6, 1.6))
        if wanted == scale:  # at the limit: a very flat or very roomy patient
            break
        scale = wanted
        parts, liver = build(scale)
    return scale, parts, liver


def painted_liver_ml(parts: list, liver) -> float:
    """Labelled (liver) volume in mL when ``parts`` are painted on a coarse grid over the liver."""
    low, high = liver.bounds()
    shape_xyz = np.maximum(np.ceil((high - low) / COARSE_MM).astype(int) + 1, 1)
    grid = Grid(tuple(shape_xyz[::-1].tolist()), low, (COARSE_MM,) * 3)
    tissue = np.zeros(grid.shape, dtype=np.uint8)
    label = np.zeros(grid.shape, dtype=np.uint8)
    paint_parts(parts, grid, np.zeros(3), tissue, label)
    return float(np.count_nonzero(label)) * COARSE_MM**3 / 1000
