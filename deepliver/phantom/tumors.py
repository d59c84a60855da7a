"""Liver tumors: placed inside the painted liver, round to lobulated, darker or brighter than
the liver depending on the phase, sometimes with a brighter rim; the label never leaves the liver.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepliver.phantom.liver import Liver
from deepliver.phantom.render import Canvas
from deepliver.phantom.shapes import Ellipsoid, Points, Wobble, rotation
from deepliver.phantom.tissues import FIRST_TUMOR_ID, HYPER_PROBABILITY, TUMOR_CONTRAST, Tissue
from deepliver.volume import Grid

CANDIDATES_PER_TUMOR = 200


@dataclass(frozen=True)
class Tumor:
    """One tumor as generated: centre (LPS mm), nominal diameter (mm), and hypo/hyper kind."""

    center: tuple[float, float, float]
    diameter_mm: float
    kind: str  # "hypo" | "hyper" (relative to the liver in this phase)
    rim: bool


@dataclass(frozen=True)
class TumorPart:
    shape: Ellipsoid
    rim_mm: float  # 0 = no rim
    rim_id: int
    core_id: int

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.shape.bounds()

    def paint(self, p: Points, canvas: Canvas) -> None:
        distance = self.shape.sdf(p)
        in_liver = (canvas.label == 1) | (canvas.label == 2)
        canvas.put(distance < 0, self.rim_id, label=2, where=in_liver)
        canvas.put(distance < -np.float32(self.rim_mm), self.core_id, label=2, where=in_liver)


def place_tumors(
    rng: np.random.Generator,
    count: int,
    diameters: tuple[float, float],
    liver: Liver,
    label: np.ndarray,
    grid: Grid,
    offset: np.ndarray,
) -> list[tuple[Ellipsoid, float]]:
    """Shapes (anatomy frame) and diameters for tumors centred on voxels labelled liver.

    Centres snap to voxel centres so even a 5 mm tumor on 5 mm slices covers a voxel.
    """
    low, high = liver.bounds()
    placed = []
    for _ in range(count):
        diameter = float(np.exp(rng.uniform(np.log(diameters[0]), np.log(diameters[1]))))
        center = _find_center(rng, diameter / 2, liver, label, grid, offset, low, high)
        if center is None:
            continue
        radius = diameter / 2
        shape = Ellipsoid(
            center=center,
            radii=radius * rng.uniform(0.85, 1.15, size=3),
            axes=rotation(rng, 180),
            wobble=Wobble.random(
                rng, radius * rng.uniform(0.0, 0.25), (radius, 3 * radius), waves=4
            ),
        )
        placed.append((shape, diameter))
    return placed


def _find_center(rng, radius, liver, label, grid, offset, low, high) -> np.ndarray | None:
    points = rng.uniform(low, high, size=(CANDIDATES_PER_TUMOR, 3))
    ijk = np.round(grid.physical_to_index(points + offset)).astype(int)
    inside = np.all((ijk >= 0) & (ijk < grid.size_ijk), axis=1)
    points, ijk = points[inside], ijk[inside]
    points = grid.index_to_physical(ijk) - offset  # snapped to voxel centres
    in_liver = label[ijk[:, 2], ijk[:, 1], ijk[:, 0]] == 1
    points = points[in_liver]
    if len(points) == 0:
        return None
    f32 = points.astype(np.float32)
    depth = -liver.sdf(Points(f32[:, 0], f32[:, 1], f32[:, 2]))
    deep_enough = np.flatnonzero(depth > min(0.4 * radius, 15))
    return points[deep_enough[0] if len(deep_enough) else int(np.argmax(depth))]


def tumor_parts(
    rng: np.random.Generator, placed, phase: str, palette: np.ndarray, offset: np.ndarray
) -> tuple[list[TumorPart], list[Tumor]]:
    """Give each tumor its kind, rim and HU (written into the palette)."""
    parts, tumors = [], []
    liver_hu = palette[Tissue.LIVER]
    for n, (shape, diameter) in enumerate(placed):
        kind = "hyper" if rng.random() < HYPER_PROBABILITY[phase] else "hypo"
        core_hu = liver_hu + rng.uniform(*TUMOR_CONTRAST[phase][kind])
        rim = diameter > 15 and rng.random() < 0.4
        rim_id, core_id = FIRST_TUMOR_ID + 2 * n, FIRST_TUMOR_ID + 2 * n + 1
        palette[core_id] = core_hu
        palette[rim_id] = core_hu + rng.uniform(20, 50) if rim else core_hu
        rim_mm = rng.uniform(2, 5) if rim else 0.0
        parts.append(TumorPart(shape, rim_mm, rim_id, core_id))
        center = tuple(float(v) for v in shape.center + offset)
        tumors.append(Tumor(center, round(diameter, 2), kind, rim))
    return parts, tumors
