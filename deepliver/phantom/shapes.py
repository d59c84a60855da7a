"""Implicit shapes in patient millimetres: approximate signed distances (negative inside).

Coordinates arrive as broadcastable float32 arrays (x, y, z), so a shape that depends on fewer
axes costs less: on an axial grid, x varies only along the last array axis.
Smooth random deformations (:class:`Wobble`) make every patient's organs a little different.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Points:
    """Broadcastable LPS coordinates (mm, anatomy frame) of a block of voxel centres."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    region: object | None = None  # render.Region they fill, if any: enables refine.py


@dataclass(frozen=True)
class Wobble:
    """A smooth random field (sum of plane waves), in mm, added to a distance to deform a shape."""

    amplitudes: np.ndarray  # (n,)
    wavevectors: np.ndarray  # (n, 3) radians per mm
    phases: np.ndarray  # (n,)

    @classmethod
    def random(
        cls,
        rng: np.random.Generator,
        amplitude_mm: float,
        wavelength_mm: tuple[float, float],
        waves: int = 3,
    ) -> Wobble:
        directions = rng.normal(size=(waves, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        wavelengths = rng.uniform(*wavelength_mm, size=waves)
        amplitudes = amplitude_mm * rng.uniform(0.5, 1.0, size=waves) / np.sqrt(waves)
        return cls(
            amplitudes,
            directions * (2 * np.pi / wavelengths[:, None]),
            rng.uniform(0, 2 * np.pi, waves),
        )

    def __call__(self, p: Points) -> np.ndarray:
        total = np.float32(0)
        for amplitude, (kx, ky, kz), phase in zip(
            self.amplitudes, self.wavevectors, self.phases, strict=True
        ):
            argument = (
                np.float32(kx) * p.x
                + np.float32(ky) * p.y
                + (np.float32(kz) * p.z + np.float32(phase))
            )
            total = total + np.float32(amplitude) * np.sin(argument)
        return total


def rotation(rng: np.random.Generator, max_degrees: float) -> np.ndarray:
    """A random rotation matrix of at most ``max_degrees`` about a random axis."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    return axis_rotation(axis, np.radians(rng.uniform(-max_degrees, max_degrees)))


def axis_rotation(axis, angle: float) -> np.ndarray:
    """Rotation by ``angle`` radians about a unit ``axis`` (Rodrigues)."""
    x, y, z = axis
    cross = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


@dataclass(frozen=True)
class Ellipsoid:
    """An ellipsoid, optionally rotated (columns of ``axes`` = its local axes) and tapered.

    ``taper`` shrinks the second and third radii along the first axis (a wedge: the liver's
    left lobe thins towards the patient's left).
    """

    center: np.ndarray
    radii: np.ndarray
    axes: np.ndarray | None = None
    taper: float = 0.0
    wobble: Wobble | None = None

    def bounds(self, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        axes = np.eye(3) if self.axes is None else self.axes
        half = np.sqrt(((axes * self.radii) ** 2).sum(axis=1)) * (1 + abs(self.taper))
        extra = margin + (0 if self.wobble is None else float(np.sum(self.wobble.amplitudes)))
        return self.center - half - extra, self.center + half + extra

    def local(self, p: Points) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        dx, dy, dz = (
            p.x - np.float32(self.center[0]),
            p.y - np.float32(self.center[1]),
            p.z - np.float32(self.center[2]),
        )
        if self.axes is None:
            return dx, dy, dz
        a = self.axes.astype(np.float32)
        return tuple(a[0, n] * dx + a[1, n] * dy + a[2, n] * dz for n in range(3))

    def sdf(self, p: Points) -> np.ndarray:
        u, v, w = self.local(p)
        ru, rv, rw = (np.float32(r) for r in self.radii)
        if self.taper:
            scale = np.clip(1 - np.float32(self.taper) * u / ru, 0.25, 2.0)
            rv, rw = rv * scale, rw * scale
        return _ellipsoid_distance(u / ru, v / rv, w / rw, ru, rv, rw, self.radii) + (
            0 if self.wobble is None else self.wobble(p)
        )


def _ellipsoid_distance(u, v, w, ru, rv, rw, radii) -> np.ndarray:
    """Distance estimate (r - 1) / |grad r| for normalised coordinates (u, v, w).

    Written with in-place operations: this runs on every voxel of every organ's box.
    """
    r = u * u + v * v + w * w
    np.sqrt(r, out=r)
    gradient = np.square(u / ru) + np.square(v / rv) + np.square(w / rw)
    np.sqrt(gradient, out=gradient)
    gradient /= np.maximum(r, np.float32(1e-6))
    np.clip(
        gradient,
        np.float32(1 / (np.max(radii) * 2)),
        np.float32(1 / (np.min(radii) * 0.25)),
        out=gradient,
    )
    r -= np.float32(1)
    r /= gradient
    return r


@dataclass(frozen=True)
class Capsule:
    """A tube of ``radius`` around the segment start-end (vessels)."""

    start: np.ndarray
    end: np.ndarray
    radius: float

    def bounds(self, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        reach = self.radius + margin
        return np.minimum(self.start, self.end) - reach, np.maximum(self.start, self.end) + reach

    def sdf(self, p: Points) -> np.ndarray:
        d = (self.end - self.start).astype(np.float32)
        length2 = max(float(d @ d), 1e-6)
        dx, dy, dz = (
            p.x - np.float32(self.start[0]),
            p.y - np.float32(self.start[1]),
            p.z - np.float32(self.start[2]),
        )
        t = np.clip((dx * d[0] + dy * d[1] + dz * d[2]) / np.float32(length2), 0, 1)
        ex, ey, ez = dx - t * d[0], dy - t * d[1], dz - t * d[2]
        return np.sqrt(ex * ex + ey * ey + ez * ez) - np.float32(self.radius)


def smooth_union(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Union of two distance fields with a rounded seam of about ``k`` mm."""
    k = np.float32(k)
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0, 1)
    return b + (a - b) * h - k * h * (1 - h)


def union_bounds(*boxes: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)
