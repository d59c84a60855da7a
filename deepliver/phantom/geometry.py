"""Where the scanner puts its grid: field of view, spacing, orientation, and table offsets."""

from __future__ import annotations

import numpy as np

from deepliver.phantom.shapes import axis_rotation
from deepliver.phantom.spec import PhantomSpec
from deepliver.volume import Grid

COMMON_SLICE_SPACINGS = (0.625, 0.8, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 5.0)


def choose_grid(
    spec: PhantomSpec, rng: np.random.Generator, body_width: float, liver_z: tuple[float, float]
) -> tuple[Grid, np.ndarray]:
    """The grid and the LPS offset of the anatomy frame.

    Without an explicit spacing the field of view is 30-46 cm (wider than the body) and the
    slice spacing a common value, raised where needed so the slices cover the whole liver.
    """
    nx, ny, nz = spec.size
    liver_height = liver_z[1] - liver_z[0]
    if spec.spacing is None:
        fov = rng.uniform(max(300.0, min(body_width + 20, 460)), max(460.0, body_width + 20))
        pixel = fov / max(nx, ny)
        needed = (liver_height + 30) / nz
        allowed = [s for s in COMMON_SLICE_SPACINGS if s >= needed]
        slice_spacing = float(rng.choice(allowed)) if allowed else needed
        spacing = np.array([pixel, pixel, slice_spacing])
    else:
        spacing = np.asarray(spec.spacing, dtype=np.float64)

    slack = max(0.0, (nz * spacing[2] - liver_height - 20) / 2)
    center = np.array(
        [
            rng.uniform(-10, 10),
            rng.uniform(-25, 25),
            (liver_z[0] + liver_z[1]) / 2 + rng.uniform(-slack, slack),
        ]
    )
    direction = _direction(spec.orientation, rng)
    # Real series carry arbitrary table positions: shift the whole patient in LPS.
    offset = np.array([rng.uniform(-20, 20), rng.uniform(-60, 60), rng.uniform(-1000, 200)])
    half_extent = spacing * (np.array([nx, ny, nz]) - 1) / 2
    origin = center + offset - direction @ half_extent
    return Grid((nz, ny, nx), origin, spacing, direction), offset


def _direction(orientation: str, rng: np.random.Generator) -> np.ndarray:
    tilt = np.radians(rng.uniform(10, 25)) * rng.choice([-1, 1])
    twist = np.radians(rng.uniform(-8, 8))
    if orientation == "axial":
        return np.eye(3)
    return axis_rotation((1.0, 0.0, 0.0), tilt) @ axis_rotation((0.0, 0.0, 1.0), twist)
