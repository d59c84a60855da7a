"""Great vessels (aorta, inferior vena cava) and the liver's portal and hepatic vein trees."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepliver.phantom.render import Canvas
from deepliver.phantom.shapes import Capsule, Points
from deepliver.phantom.spine import Spine
from deepliver.phantom.tissues import Tissue

BONE = (Tissue.CANCELLOUS_BONE, Tissue.CORTICAL_BONE, Tissue.DISC, Tissue.CSF)


@dataclass(frozen=True)
class Tube:
    """A vertical elliptical vessel between two heights, painted over anything but bone."""

    x: float
    y: float
    radii: tuple[float, float]
    z_range: tuple[float, float]
    tissue: Tissue

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        rx, ry = self.radii
        return np.array([self.x - rx, self.y - ry, self.z_range[0]]), np.array(
            [self.x + rx, self.y + ry, self.z_range[1]]
        )

    def paint(self, p: Points, canvas: Canvas) -> None:
        u = (p.x - np.float32(self.x)) / np.float32(self.radii[0])
        v = (p.y - np.float32(self.y)) / np.float32(self.radii[1])
        inside = (u * u + v * v < 1) & (p.z >= self.z_range[0]) & (p.z <= self.z_range[1])
        keep = canvas.is_tissue(*BONE)
        canvas.put(inside, self.tissue, label=0, where=~keep)


def aorta(rng: np.random.Generator, spine: Spine) -> Tube:
    """In front of the spine, left of the midline, 20-25 mm across."""
    radius = rng.uniform(10, 12.5)
    return Tube(
        rng.uniform(10, 20),
        spine.y - spine.radius_y - radius - 1,
        (radius, radius),
        (-3000, 150),
        Tissue.AORTA,
    )


def vena_cava(rng: np.random.Generator, spine: Spine) -> Tube:
    """Right of the aorta, through the back of the liver up to the heart."""
    radii = (rng.uniform(10, 14), rng.uniform(8, 11))
    y = spine.y - spine.radius_y - radii[1] + rng.uniform(-8, 2)
    return Tube(-spine.radius_x - rng.uniform(0, 8), y, radii, (-3000, 25), Tissue.IVC)


@dataclass(frozen=True)
class VesselSegment:
    """One branch of a vessel tree, painted only inside the liver (the label stays liver)."""

    capsule: Capsule
    tissue: Tissue

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.capsule.bounds()

    def paint(self, p: Points, canvas: Canvas) -> None:
        canvas.put(self.capsule.sdf(p) < 0, self.tissue, label=1, where=canvas.label == 1)


def grow_tree(
    rng: np.random.Generator, start, direction, length: float, radius: float, depth: int
) -> list[Capsule]:
    """A vessel segment and, recursively, two thinner children that fork off it."""
    direction = np.asarray(direction, dtype=float) / np.linalg.norm(direction)
    end = np.asarray(start, dtype=float) + direction * length
    segments = [Capsule(np.asarray(start, dtype=float), end, radius)]
    if depth == 0:
        return segments
    for _ in range(2):
        bend = direction + rng.normal(scale=0.6, size=3)
        segments += grow_tree(
            rng, end, bend, length * rng.uniform(0.55, 0.8), radius * 0.7, depth - 1
        )
    return segments


def portal_tree(rng: np.random.Generator, hilum, width: float) -> list[VesselSegment]:
    """Portal vein entering at the hilum, one trunk to the right lobe and one to the left."""
    segments = grow_tree(
        rng, hilum, (-1, 0.1, 0.3), width * rng.uniform(0.22, 0.3), rng.uniform(5.5, 7.5), 3
    )
    segments += grow_tree(
        rng, hilum, (1, -0.8, 0.2), width * rng.uniform(0.18, 0.25), rng.uniform(4.5, 6), 3
    )
    return [VesselSegment(s, Tissue.PORTAL_VEIN) for s in segments]


def hepatic_tree(rng: np.random.Generator, confluence, width: float) -> list[VesselSegment]:
    """Right, middle and left hepatic veins fanning down and forward from the IVC at the top."""
    segments = []
    for direction in ((-1, -0.3, -0.5), (-0.3, -1, -0.6), (0.6, -1, -0.3)):
        segments += grow_tree(
            rng, confluence, direction, width * rng.uniform(0.2, 0.28), rng.uniform(4, 6), 2
        )
    return [VesselSegment(s, Tissue.HEPATIC_VEIN) for s in segments]
