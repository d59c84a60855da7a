"""Painting parts onto the voxel grid, then turning tissue ids into a CT-like HU volume.

Each part is evaluated only inside its own index-space bounding box, slab by slab, so large
volumes stay fast and small in memory, and oblique grids need no special case.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy import ndimage

from deepliver.phantom.shapes import Points
from deepliver.volume import Box, Grid

SLAB_VOXELS = 2_000_000


@dataclass(frozen=True)
class Canvas:
    """Views of the tissue and label maps for one slab of one part's box."""

    tissue: np.ndarray
    label: np.ndarray

    def put(
        self, mask: np.ndarray, tissue, label: int = 0, where: np.ndarray | None = None
    ) -> None:
        """Paint ``tissue`` (a scalar or an array) and ``label`` where mask (and where) hold."""
        if where is not None:
            mask = mask & where
        np.copyto(self.tissue, np.asarray(tissue, dtype=np.uint8), where=mask)
        np.copyto(self.label, np.uint8(label), where=mask)

    def is_tissue(self, *tissues: int) -> np.ndarray:
        """Where the canvas currently holds one of ``tissues``."""
        table = np.zeros(256, dtype=bool)
        table[list(tissues)] = True
        return table[self.tissue]


class Part(Protocol):
    """Something painted onto the phantom: an organ, a vessel, a tumor."""

    def bounds(self) -> tuple[np.ndarray, np.ndarray]: ...

    def paint(self, p: Points, canvas: Canvas) -> None: ...


def paint_parts(
    parts: Iterable[Part], grid: Grid, offset: np.ndarray, tissue: np.ndarray, label: np.ndarray
) -> None:
    """Paint each part, in order, onto the (z, y, x) tissue and label maps of ``grid``.

    ``offset`` is the LPS position of the anatomy frame's origin (parts live in that frame).
    """
    for part in parts:
        box = index_box(grid, np.add(part.bounds(), offset))
        if box is None:
            continue
        for slab in _slabs(box):
            canvas = Canvas(tissue[slab.slices], label[slab.slices])
            part.paint(block_points(grid, offset, slab), canvas)


def index_box(grid: Grid, world_bounds) -> Box | None:
    """The (z, y, x) voxel box covering an LPS box (its 8 corners mapped to indices), or None."""
    low, high = (np.asarray(b, dtype=np.float64) for b in world_bounds)
    corners = np.array(list(itertools.product(*zip(low, high, strict=True))))
    ijk = grid.physical_to_index(corners)
    start = np.maximum(np.floor(ijk.min(axis=0)).astype(int), 0)
    stop = np.minimum(np.ceil(ijk.max(axis=0)).astype(int) + 1, grid.size_ijk)
    if np.any(stop <= start):
        return None
    return Box(tuple(start[::-1].tolist()), tuple(stop[::-1].tolist()))


def _slabs(box: Box) -> Iterable[Box]:
    nz, ny, nx = box.shape
    step = max(8, SLAB_VOXELS // max(1, ny * nx) // 8 * 8)  # whole blocks for refine.py
    for z0 in range(box.start[0], box.stop[0], step):
        yield Box((z0, box.start[1], box.start[2]), (min(z0 + step, box.stop[0]), *box.stop[1:]))


@dataclass(frozen=True)
class Region:
    """A voxel box of a grid, with the anatomy frame's LPS offset: where Points came from."""

    grid: Grid
    offset: np.ndarray
    box: Box


def block_points(grid: Grid, offset: np.ndarray, box: Box) -> Points:
    """Anatomy-frame coordinates of a voxel box; each axis spans only the dims it needs."""
    k, j, i = (np.arange(a, b, dtype=np.float64) for a, b in zip(box.start, box.stop, strict=True))
    x, y, z = index_points(grid, offset, k[:, None, None], j[None, :, None], i[None, None, :])
    return Points(x, y, z, Region(grid, offset, box))


def index_points(grid: Grid, offset: np.ndarray, k, j, i) -> tuple[np.ndarray, ...]:
    """Anatomy-frame (x, y, z) float32 of broadcastable voxel indices; zero terms are skipped
    so an axial grid keeps each coordinate on the axes it varies along."""
    matrix = grid.direction * grid.spacing
    origin = grid.origin - offset
    coordinates = []
    for row in range(3):
        total = np.full((1,) * np.ndim(k), origin[row])
        for coefficient, index in zip(matrix[row], (i, j, k), strict=True):
            if abs(coefficient) > 1e-9:
                total = total + coefficient * index
        coordinates.append(total.astype(np.float32))
    return tuple(coordinates)


def to_hu(
    tissue: np.ndarray,
    palette: np.ndarray,
    spacing_xyz: Sequence[float],
    blur_mm_xyz: Sequence[float],
    noise_std: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Tissue ids -> float32 HU with partial-volume blur and slightly correlated noise.

    Noise is added before the single blur, so it comes out correlated like real CT noise; it
    is pre-scaled by how much the blur will shrink it, so the final std is ``noise_std``.
    """
    sigma_zyx = tuple(
        float(b) / float(s) for b, s in zip(blur_mm_xyz[::-1], spacing_xyz[::-1], strict=True)
    )
    scale = np.float32(noise_std / _blur_noise_gain(sigma_zyx))
    hu = np.empty(tissue.shape, dtype=np.float32)
    step = max(1, SLAB_VOXELS // (tissue.shape[1] * tissue.shape[2]))
    for z0 in range(0, tissue.shape[0], step):
        part = hu[z0 : z0 + step]
        np.take(palette, tissue[z0 : z0 + step], out=part)
        part += scale * rng.standard_normal(part.shape, dtype=np.float32)
    _blur_in_place(hu, sigma_zyx)
    return hu


def _blur_in_place(volume: np.ndarray, sigma_zyx: tuple[float, float, float]) -> None:
    """Separable Gaussian blur; slabs run on threads (scipy releases the GIL)."""
    jobs = []
    if max(sigma_zyx[1:]) > 0.05:
        for z0 in range(0, volume.shape[0], 8):
            block = volume[z0 : z0 + 8]
            jobs.append((block, (0.0, sigma_zyx[1], sigma_zyx[2])))
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda job: _gauss(*job), jobs))
        if sigma_zyx[0] > 0.05:
            rows = [volume[:, y0 : y0 + 32] for y0 in range(0, volume.shape[1], 32)]
            list(pool.map(lambda block: _gauss(block, (sigma_zyx[0], 0.0, 0.0)), rows))


def _gauss(block: np.ndarray, sigma: tuple[float, float, float]) -> None:
    ndimage.gaussian_filter(block, sigma, truncate=3.0, output=block, mode="nearest")


def _blur_noise_gain(sigma_zyx: tuple[float, float, float]) -> float:
    """How much the blur shrinks white noise's std, measured on a small block."""
    noise = np.random.default_rng(12345).standard_normal((40, 40, 40)).astype(np.float32)
    before = float(noise.std())
    _gauss(noise, sigma_zyx)
    return float(noise[8:-8, 8:-8, 8:-8].std()) / before


def scan_circle_mask(grid: Grid) -> np.ndarray:
    """(y, x) mask of the in-plane reconstruction circle (inscribed in the field of view)."""
    ny, nx = grid.shape[1:]
    j = (np.arange(ny) - (ny - 1) / 2) * grid.spacing[1]
    i = (np.arange(nx) - (nx - 1) / 2) * grid.spacing[0]
    radius = min(nx * grid.spacing[0], ny * grid.spacing[1]) / 2
    return (i[None, :] ** 2 + j[:, None] ** 2) <= radius**2
