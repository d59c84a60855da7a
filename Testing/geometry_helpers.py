"""The same volume stored another way: axes in another order, some of them reversed, as NIfTI
files (RAS), head-first slice orders and sagittal series store a body."""

from __future__ import annotations

import itertools

import numpy as np

from deepliver.volume import Grid, Volume

# Every way to store a volume: (old axis for new i, j, k) and which new axes run backwards.
STORAGES = [
    (order, flips)
    for order in itertools.permutations(range(3))
    for flips in itertools.product((False, True), repeat=3)
]


def stored_as(volume: Volume, order, flips) -> Volume:
    """The same voxels at the same places; new axis n is old axis ``order[n]`` (0 = i),
    reversed where ``flips[n]``."""
    grid = volume.grid
    size, origin, axes = grid.size_ijk, grid.origin.copy(), []
    for old, flip in zip(order, flips, strict=True):
        axis = grid.direction[:, old]
        if flip:
            origin = origin + axis * grid.spacing[old] * (size[old] - 1)
            axis = -axis
        axes.append(axis)
    # Array axes are (k, j, i): old axis c is array axis 2 - c.
    array = np.transpose(volume.array, [2 - order[2], 2 - order[1], 2 - order[0]])
    for new, flip in enumerate(flips):
        if flip:
            array = np.flip(array, axis=2 - new)
    spacing = [grid.spacing[old] for old in order]
    stored = Grid(array.shape, origin, spacing, np.column_stack(axes))
    return Volume(np.ascontiguousarray(array), stored)
