"""The other organs, placed relative to the body, spine and liver: each a confounder or a
landmark a model must learn to tell from the liver."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepliver.phantom.body import Body
from deepliver.phantom.parts import Hollow, Layered
from deepliver.phantom.render import Canvas
from deepliver.phantom.shapes import Ellipsoid, Points, Wobble, rotation
from deepliver.phantom.spine import Spine
from deepliver.phantom.tissues import Tissue


@dataclass(frozen=True)
class Clipped:
    """A shape kept inside the body cavity and below the diaphragm."""

    shape: Ellipsoid
    body: Body
    below_dome: bool = True

    def bounds(self, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        return self.shape.bounds(margin)

    def sdf(self, p: Points) -> np.ndarray:
        distance = np.maximum(self.shape.sdf(p), np.float32(1) - self.body.cavity_depth(p))
        if not self.below_dome:
            return distance
        return np.maximum(distance, p.z - self.body.dome(p.x, p.y) + np.float32(4))


def spleen(rng: np.random.Generator, body: Body) -> Spleen:
    A, back = body.cavity_half_width, body.back - body.wall
    shape = Ellipsoid(
        center=np.array([0.68 * A, 0.3 * back, -rng.uniform(40, 70)]),
        radii=np.array([rng.uniform(18, 26), rng.uniform(45, 60), rng.uniform(45, 60)]),
        axes=_rotation_z(rng.uniform(-55, -35)) @ rotation(rng, 10),
        wobble=Wobble.random(rng, 4, (50, 120)),
    )
    return Spleen(Clipped(shape, body), Wobble.random(rng, 1, (18, 30), waves=2))


@dataclass(frozen=True)
class Spleen:
    """Spleen in the left upper quadrant; banded ("zebra") in the arterial phase."""

    shape: Clipped
    bands: Wobble

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.shape.bounds()

    def paint(self, p: Points, canvas: Canvas) -> None:
        inside = self.shape.sdf(p) < 0
        tissue = np.where(self.bands(p) > 0, np.uint8(Tissue.SPLEEN_ALT), np.uint8(Tissue.SPLEEN))
        canvas.put(inside, tissue, where=canvas.is_tissue(Tissue.FAT))


def kidneys(rng: np.random.Generator, body: Body, spine: Spine) -> list[Layered]:
    """Both kidneys beside the spine, the right one lower (under the liver); cortex, medulla,
    and fat in the renal sinus at the hilum, which faces forward and inward."""
    parts = []
    for side, z in ((-1, -rng.uniform(115, 140)), (1, -rng.uniform(95, 120))):
        radii = np.array([rng.uniform(24, 30), rng.uniform(20, 26), rng.uniform(50, 60)])
        x = side * (spine.radius_x + radii[0] + rng.uniform(18, 30))
        axes = _rotation_z(side * rng.uniform(20, 35)) @ _rotation_y(-side * rng.uniform(8, 18))
        center = np.array([x, spine.y + rng.uniform(-5, 10), z])
        kidney = Clipped(
            Ellipsoid(center, radii, axes, wobble=Wobble.random(rng, 2, (40, 90))), body
        )
        cortex = rng.uniform(6, 9)
        parts.append(Layered(kidney, ((0, Tissue.KIDNEY_CORTEX), (cortex, Tissue.KIDNEY_MEDULLA))))
        hilum = center + axes @ np.array([-side * radii[0] * 0.75, -radii[1] * 0.3, 0])
        sinus = Ellipsoid(hilum, radii * [0.45, 0.45, 0.5], axes)
        parts.append(
            Layered(sinus, ((0, Tissue.FAT),), over=(Tissue.KIDNEY_MEDULLA, Tissue.KIDNEY_CORTEX))
        )
    return parts


def stomach(rng: np.random.Generator, body: Body) -> Hollow:
    A, front = body.cavity_half_width, body.cavity_front
    shape = Ellipsoid(
        center=np.array([0.35 * A, -0.25 * front, -rng.uniform(35, 65)]),
        radii=np.array([rng.uniform(30, 45), rng.uniform(30, 45), rng.uniform(45, 65)]),
        axes=_rotation_y(rng.uniform(15, 35)) @ rotation(rng, 15),
        wobble=Wobble.random(rng, 5, (40, 100)),
    )
    gas = rng.uniform(0.0, 0.6) if rng.random() < 0.8 else 0.0
    return Hollow(Clipped(shape, body), rng.uniform(3, 5), gas)


def gallbladder(rng: np.random.Generator, body: Body, liver_height: float) -> Layered:
    """Bile-filled pear under the liver's visceral surface: not labelled, it mimics a tumor."""
    A, front = body.cavity_half_width, body.cavity_front
    shape = Ellipsoid(
        center=np.array(
            [-rng.uniform(0.15, 0.35) * A, -rng.uniform(0.15, 0.35) * front, -0.72 * liver_height]
        ),
        radii=np.array([rng.uniform(12, 20), rng.uniform(12, 20), rng.uniform(35, 48)]),
        axes=_rotation_x(rng.uniform(-45, -20)) @ rotation(rng, 15),
        wobble=Wobble.random(rng, 1.5, (30, 60)),
    )
    over = (Tissue.FAT, Tissue.LIVER, Tissue.PORTAL_VEIN, Tissue.HEPATIC_VEIN)
    return Layered(shape, ((0, Tissue.GUT_WALL), (2, Tissue.BILE)), label=0, over=over)


def pancreas(rng: np.random.Generator, body: Body, spine: Spine) -> Layered:
    shape = Ellipsoid(
        center=np.array(
            [
                rng.uniform(0, 30),
                spine.y - spine.radius_y - rng.uniform(35, 50),
                -rng.uniform(90, 115),
            ]
        ),
        radii=np.array([rng.uniform(55, 75), rng.uniform(9, 14), rng.uniform(10, 15)]),
        axes=_rotation_y(rng.uniform(-25, -10)) @ _rotation_z(rng.uniform(-20, 0)),
        wobble=Wobble.random(rng, 3, (20, 50)),
    )
    return Layered(Clipped(shape, body), ((0, Tissue.PANCREAS),))


def bowel(rng: np.random.Generator, body: Body, liver_height: float) -> list[Hollow]:
    """Loops of gut as blobs below the liver, some with gas, some with fluid, some with both."""
    A, front, back = body.cavity_half_width, body.cavity_front, body.back - body.wall
    loops = []
    for _ in range(int(rng.integers(12, 24))):
        shape = Ellipsoid(
            center=np.array(
                [
                    rng.uniform(-0.8, 0.8) * A,
                    rng.uniform(-0.85 * front, 0.3 * back),
                    -rng.uniform(0.75 * liver_height, 2.2 * liver_height),
                ]
            ),
            radii=rng.uniform(10, 28, size=3),
            axes=rotation(rng, 90),
            wobble=Wobble.random(rng, 3, (20, 50)),
        )
        gas = float(rng.choice([0.0, 0.0, 1.0, rng.uniform(0.2, 0.7)]))
        loops.append(Hollow(Clipped(shape, body), rng.uniform(1.5, 3), gas))
    return loops


def heart(rng: np.random.Generator, body: Body) -> Layered:
    """Heart on the central tendon, above the diaphragm, left of the midline and in front."""
    front = body.cavity_front
    center = np.array([rng.uniform(5, 30), -0.3 * front, rng.uniform(35, 55)])
    shape = Ellipsoid(
        center=center,
        radii=np.array([rng.uniform(55, 70), rng.uniform(45, 55), rng.uniform(45, 55)]),
        axes=_rotation_z(rng.uniform(20, 40)) @ rotation(rng, 15),
    )
    layers = ((0, Tissue.MYOCARDIUM), (rng.uniform(8, 12), Tissue.HEART_BLOOD))
    over = (Tissue.LUNG, Tissue.FAT, Tissue.MUSCLE)
    return Layered(Clipped(shape, body, below_dome=False), layers, over=over)


def _rotation_x(degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _rotation_y(degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rotation_z(degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
