"""Coarse-to-fine distance evaluation for big smooth shapes (the liver).

Most voxels of a big organ's box lie far inside or far outside it. A shape's distance changes
by at most about ``LIPSCHITZ`` mm per mm, so one value at a block's centre settles every
voxel of the block unless that value lies near a threshold; only those near-surface blocks
are evaluated voxel by voxel. Tilted grids gain most: there every coordinate is a full array.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from deepliver.phantom.render import Region, index_points
from deepliver.phantom.shapes import Points

BLOCK = 8  # voxels per block edge
LIPSCHITZ = 2.0  # margin for estimated (not exact) distances, wobble and clipping
MIN_VOXELS = 1_000_000  # smaller boxes: evaluate directly


def refined_sdf(shape, p: Points, thresholds: Sequence[float]) -> np.ndarray:
    """``shape.sdf(p)``, exact wherever the result may fall on either side of a threshold.

    Elsewhere the value is the block centre's, which lies on the same side of every threshold.
    """
    region = p.region
    if not isinstance(region, Region) or np.prod(region.box.shape) < MIN_VOXELS:
        return shape.sdf(p)
    grid, offset, box = region.grid, region.offset, region.box
    counts = [-(-n // BLOCK) for n in box.shape]
    centres = [
        start + BLOCK * np.arange(n, dtype=np.float64) + (BLOCK - 1) / 2
        for start, n in zip(box.start, counts, strict=True)
    ]
    coarse = shape.sdf(Points(*index_points(grid, offset, *np.ix_(*centres)))).astype(np.float32)
    coarse = np.broadcast_to(coarse, counts)
    half_diagonal = float(np.linalg.norm(grid.spacing * (BLOCK / 2)))
    margin = np.float32(LIPSCHITZ * half_diagonal)
    near = np.zeros(counts, dtype=bool)
    for threshold in thresholds:
        near |= np.abs(coarse - np.float32(threshold)) <= margin

    padded = np.empty([n * BLOCK for n in counts], dtype=np.float32)
    blocks = padded.reshape(counts[0], BLOCK, counts[1], BLOCK, counts[2], BLOCK)
    blocks[...] = coarse[:, None, :, None, :, None]
    bz, by, bx = np.nonzero(near)
    if len(bz):
        step = np.arange(BLOCK, dtype=np.float64)
        k = (box.start[0] + BLOCK * bz)[:, None, None, None] + step[:, None, None]
        j = (box.start[1] + BLOCK * by)[:, None, None, None] + step[:, None]
        i = (box.start[2] + BLOCK * bx)[:, None, None, None] + step
        fine = shape.sdf(Points(*index_points(grid, offset, k, j, i)))
        blocks.transpose(0, 2, 4, 1, 3, 5)[bz, by, bx] = fine
    nz, ny, nx = box.shape
    return padded[:nz, :ny, :nx]
