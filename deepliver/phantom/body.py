"""The patient's build: body outline, wall layers, diaphragm domes, and the torso part.

All positions are in the anatomy frame (mm, LPS axes): x = 0 on the midline, y = 0 at the body's
centre (anterior is -y), z = 0 at the top of the right diaphragm dome (the liver's top).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepliver.phantom.render import Canvas
from deepliver.phantom.shapes import Points
from deepliver.phantom.tissues import Tissue

SKIN_MM = 2.0
DIAPHRAGM_MM = 5.0


@dataclass(frozen=True)
class Body:
    """One patient's proportions, drawn from adult ranges (ct-facts.md)."""

    half_width: float  # transverse diameter 280-400 mm
    front: float  # anterior half-depth (the AP diameter 200-300 mm = front + back)
    back: float
    fat: float  # subcutaneous fat, 5-40 mm
    muscle: float  # abdominal wall muscle
    paraspinal: float  # extra muscle depth beside the spine
    width_wave: tuple[float, float, float]  # slow change of the outline along z
    right_dome_x: float
    left_dome_x: float
    left_dome_z: float
    dome_curvature: float  # 1 / (2 * radius of the dome), per mm

    @classmethod
    def random(cls, rng: np.random.Generator) -> Body:
        width = rng.uniform(280, 400)
        depth = float(np.clip(width * rng.uniform(0.62, 0.82), 200, 300))
        size = (width - 280) / 120  # bigger patients tend to carry more fat
        half = width / 2
        return cls(
            half_width=half,
            front=depth * rng.uniform(0.52, 0.58),
            back=depth * 0.45,
            fat=float(np.clip(rng.uniform(5, 25) + 18 * size, 5, min(40, 0.1 * depth))),
            muscle=rng.uniform(8, 15),
            paraspinal=rng.uniform(35, 55),
            width_wave=(rng.uniform(0.02, 0.05), rng.uniform(150, 300), rng.uniform(0, 2 * np.pi)),
            right_dome_x=-0.4 * half,
            left_dome_x=0.42 * half,
            left_dome_z=-rng.uniform(8, 30),
            dome_curvature=1 / (2 * rng.uniform(80, 120)),
        )

    # --- derived sizes of the abdominal cavity (inside the wall) ----------------------

    @property
    def wall(self) -> float:
        return SKIN_MM + self.fat + self.muscle

    @property
    def cavity_half_width(self) -> float:
        return self.half_width - self.wall

    @property
    def cavity_front(self) -> float:
        return self.front - self.wall

    @property
    def cavity_back(self) -> float:
        """Posterior cavity reach at the midline, in front of the paraspinal muscles."""
        return self.back - self.wall - self.paraspinal

    # --- fields -------------------------------------------------------------------------

    def depth(self, p: Points) -> np.ndarray:
        """Approximate depth (mm) below the skin; negative outside the body."""
        amplitude, wavelength, phase = self.width_wave
        stretch = 1 + np.float32(amplitude) * np.sin(
            p.z * np.float32(2 * np.pi / wavelength) + np.float32(phase)
        )
        a = np.float32(self.half_width) * stretch
        b = np.where(p.y < 0, np.float32(self.front), np.float32(self.back)) * stretch
        u, v = p.x / a, p.y / b
        q = u * u + v * v
        r = np.sqrt(q)
        gradient = np.sqrt((u / a) ** 2 + (v / b) ** 2) / np.maximum(r, 1e-6)
        gradient = np.maximum(gradient, np.float32(0.5 / self.half_width))
        return (1 - r) / gradient

    def fat_thickness(self, p: Points) -> np.ndarray:
        """Subcutaneous fat is thickest over the belly."""
        return np.float32(self.fat) * (
            1 + np.float32(0.35) * np.clip(-p.y / np.float32(self.front), -1, 1)
        )

    def muscle_thickness(self, p: Points) -> np.ndarray:
        """Wall muscle, much deeper beside the spine (the paraspinal muscles)."""
        beside_spine = np.exp(-((p.x / np.float32(55)) ** 2)) * np.clip(
            p.y / np.float32(0.45 * self.back), 0, 1
        )
        return np.float32(self.muscle) + np.float32(self.paraspinal) * beside_spine

    def cavity_depth(self, p: Points) -> np.ndarray:
        """Depth inside the abdominal/thoracic cavity; negative in the wall and outside."""
        return self.depth(p) - SKIN_MM - self.fat_thickness(p) - self.muscle_thickness(p)

    def dome(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """z of the diaphragm's lower surface: two domes, dropping deep at the back (recesses)."""
        c = np.float32(self.dome_curvature)
        back = np.where(y > 0, np.float32(1.8), np.float32(1.0))
        right = -c * ((x - np.float32(self.right_dome_x)) ** 2 + back * y * y)
        left = np.float32(self.left_dome_z) - c * (
            (x - np.float32(self.left_dome_x)) ** 2 + back * y * y
        )
        return np.maximum(right, left)


@dataclass(frozen=True)
class Torso:
    """Skin, subcutaneous fat, wall muscle, visceral fat, diaphragm, lungs and ribs."""

    body: Body
    rib_pitch: float
    rib_drop: float  # how far a rib falls from back to front
    rib_phase: float
    lowest_rib: float  # z of the lowest (floating) rib at the back

    @classmethod
    def random(cls, rng: np.random.Generator, body: Body) -> Torso:
        return cls(
            body,
            rng.uniform(26, 32),
            rng.uniform(50, 80),
            rng.uniform(0, 30),
            -rng.uniform(150, 190),
        )

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        b = self.body
        reach = np.array([b.half_width, max(b.front, b.back), 0]) * 1.1 + [0, 0, 3000]
        return -reach, reach

    def paint(self, p: Points, canvas: Canvas) -> None:
        b = self.body
        depth = b.depth(p)
        fat_end = SKIN_MM + b.fat_thickness(p)
        muscle_end = fat_end + b.muscle_thickness(p)
        canvas.put(depth >= 0, Tissue.SKIN)
        canvas.put(depth >= SKIN_MM, Tissue.FAT)
        wall = (depth >= fat_end) & (depth < muscle_end)
        canvas.put(wall, Tissue.MUSCLE)
        rib, cortex = self._ribs(p, depth - fat_end)
        canvas.put(wall & rib, Tissue.CANCELLOUS_BONE)
        canvas.put(wall & cortex, Tissue.CORTICAL_BONE)
        cavity = depth >= muscle_end
        canvas.put(cavity, Tissue.FAT)
        dome = b.dome(p.x, p.y)
        above = p.z > dome
        canvas.put(cavity & above, Tissue.MUSCLE)
        mediastinum = np.abs(p.x - np.float32(8)) < np.float32(22)
        canvas.put(cavity & (p.z > dome + np.float32(DIAPHRAGM_MM)) & ~mediastinum, Tissue.LUNG)

    def _ribs(self, p: Points, wall_depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rib cross-sections (whole rib, cortex) in the wall: oval bars that run around the
        chest from the spine, falling as they go forward; the lowest end at the side."""
        b = self.body
        frontness = np.arctan2(np.abs(p.x), p.y) / np.float32(np.pi)  # 0 at the spine, 1 in front
        t = (p.z + np.float32(self.rib_drop) * frontness - np.float32(self.rib_phase)) / np.float32(
            self.rib_pitch
        )
        n = np.round(t)
        back_z = n * np.float32(self.rib_pitch) + np.float32(self.rib_phase)
        exists = (back_z > np.float32(self.lowest_rib)) & (
            (frontness < 0.6) | (back_z > np.float32(self.lowest_rib + 70))
        )
        exists = exists & (np.abs(p.x) > np.float32(28))
        across = (t - n) * np.float32(self.rib_pitch / 5.0)
        deep = (wall_depth - np.float32(b.muscle * 0.5)) / np.float32(4.5)
        r2 = across * across + deep * deep
        rib = exists & (r2 < 1)
        return rib, rib & (r2 > np.float32(0.45))


@dataclass(frozen=True)
class Table:
    """The scanner couch under the patient's back: foam core between two thin shells."""

    top: float
    thickness: float
    sag: float

    @classmethod
    def random(cls, rng: np.random.Generator, body: Body) -> Table:
        return cls(body.back + rng.uniform(2, 25), rng.uniform(25, 50), rng.uniform(0.0005, 0.0015))

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return np.array([-240.0, self.top - 40, -3000]), np.array(
            [240.0, self.top + self.thickness + 5, 3000]
        )

    def paint(self, p: Points, canvas: Canvas) -> None:
        below = p.y - (np.float32(self.top) - np.float32(self.sag) * p.x * p.x)
        inside = (
            (below >= 0) & (below < np.float32(self.thickness)) & (np.abs(p.x) < np.float32(230))
        )
        canvas.put(inside, Tissue.SKIN, where=canvas.is_tissue(Tissue.AIR))
        core = inside & (below >= 2) & (below < np.float32(self.thickness - 2))
        canvas.put(core, Tissue.TABLE)
