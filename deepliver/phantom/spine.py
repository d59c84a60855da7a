"""The spine (vertebral bodies with a cortical shell, discs, canal, posterior arch) and psoas."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepliver.phantom.body import Body
from deepliver.phantom.render import Canvas
from deepliver.phantom.shapes import Points
from deepliver.phantom.tissues import Tissue

CORTEX_MM = 1.5


@dataclass(frozen=True)
class Spine:
    """A column of vertebrae on the midline, their bodies bulging into the back of the cavity."""

    y: float  # centre of the vertebral bodies
    radius_x: float  # vertebral body 40-50 mm wide
    radius_y: float
    pitch: float  # vertebra + disc height
    disc: float
    phase: float

    @classmethod
    def random(cls, rng: np.random.Generator, body: Body) -> Spine:
        radius_y = rng.uniform(14, 18)
        return cls(
            y=body.cavity_back - radius_y + rng.uniform(2, 8),
            radius_x=rng.uniform(20, 25),
            radius_y=radius_y,
            pitch=rng.uniform(27, 34),
            disc=rng.uniform(5, 9),
            phase=rng.uniform(0, 30),
        )

    @property
    def canal_y(self) -> float:
        return self.y + self.radius_y + 10

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return (
            np.array([-self.radius_x - 20, self.y - self.radius_y - 2, -3000]),
            np.array([self.radius_x + 20, self.canal_y + 45, 3000]),
        )

    def paint(self, p: Points, canvas: Canvas) -> None:
        phase = (p.z - np.float32(self.phase)) / np.float32(self.pitch)
        from_disc = np.abs(phase - np.round(phase)) * np.float32(
            self.pitch
        )  # mm to the disc centre
        in_vertebra = from_disc > np.float32(self.disc / 2)
        near_endplate = from_disc < np.float32(self.disc / 2 + CORTEX_MM)

        u = p.x / np.float32(self.radius_x)
        v = (p.y - np.float32(self.y)) / np.float32(self.radius_y)
        r = np.sqrt(u * u + v * v)
        column = r < 1
        shell = r > np.float32(1 - CORTEX_MM / self.radius_y)
        canvas.put(column, Tissue.DISC)
        canvas.put(column & in_vertebra, Tissue.CANCELLOUS_BONE)
        canvas.put(column & in_vertebra & (shell | near_endplate), Tissue.CORTICAL_BONE)

        # Posterior arch around the canal, and the spinous process behind it.
        cx, cy = p.x, p.y - np.float32(self.canal_y)
        rho = np.sqrt(cx * cx + cy * cy)
        arch = (rho >= 9) & (rho < 15) & (cy > -12) & in_vertebra
        spinous = (np.abs(cx) < 4) & (cy >= 12) & (cy < 40) & in_vertebra
        canvas.put(arch | spinous, Tissue.CORTICAL_BONE)
        canvas.put(rho < 9, Tissue.CSF)


@dataclass(frozen=True)
class Psoas:
    """The psoas muscles beside the lumbar spine, growing thicker downwards."""

    spine: Spine
    top: float

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        s = self.spine
        return np.array([-80.0, s.y - 40, -3000]), np.array([80.0, s.y + 30, self.top])

    def paint(self, p: Points, canvas: Canvas) -> None:
        s = self.spine
        below = np.clip((np.float32(self.top) - p.z) / np.float32(120), 0, 1)
        radius = np.float32(4) + np.float32(20) * below
        side_x = np.float32(s.radius_x + 4) + radius
        dy = p.y - np.float32(s.y)
        muscle = (np.abs(p.x) - side_x) ** 2 + dy * dy < radius * radius
        canvas.put(
            muscle & (p.z < np.float32(self.top)), Tissue.MUSCLE, where=canvas.is_tissue(Tissue.FAT)
        )
