"""Beam hardening between the arms: a darker band across the body at the arms' depth.

A patient scanned with the arms down has X-rays that cross both arms; they harden, and a band
of the abdomen at the arms' depth comes out 10 to 40 HU darker, with a fairly sharp edge (the
Siemens series in ``../shared/data/real`` has one across the back of its liver: about 100 HU in
front, 60 to 75 HU behind). A tumor model that never saw one took that half of the liver for a
tumor of 185 mL. Some phantoms get such a band; the labels do not change.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepliver.phantom.body import Body
from deepliver.phantom.render import SLAB_VOXELS, index_points
from deepliver.phantom.tissues import Tissue
from deepliver.volume import Grid

SHADOW_PROBABILITY = 0.3
DEPTH_HU = (15.0, 40.0)  # darker at full strength
_STREAM = 1777  # the band is drawn from its own stream: a phantom without one stays as it was


@dataclass(frozen=True)
class Shadow:
    """The band, in the anatomy frame's y (mm, anterior is -y)."""

    front_mm: float  # where it begins
    back_mm: float  # where it ends
    edge_mm: float  # how soft its two edges are
    depth_hu: float  # how much darker it is at full strength

    @classmethod
    def drawn(cls, seed: int, body: Body) -> Shadow | None:
        """The band of phantom ``seed``, or None (most phantoms have none)."""
        rng = np.random.default_rng([seed, _STREAM])
        if rng.random() >= SHADOW_PROBABILITY:
            return None
        front = rng.uniform(-0.15, 0.10) * (body.front + body.back)
        return cls(
            front_mm=float(front),
            back_mm=float(front + rng.uniform(60, 140)),
            edge_mm=float(rng.uniform(2, 8)),
            depth_hu=float(rng.uniform(*DEPTH_HU)),
        )

    def darkening(self, y: np.ndarray) -> np.ndarray:
        """HU to take off at anatomy-frame ``y`` (float32, the shape of ``y``)."""
        y = np.asarray(y, dtype=np.float32)
        with np.errstate(over="ignore"):  # far from an edge exp overflows to inf: a weight of 0
            after_front = 1 / (1 + np.exp(-(y - self.front_mm) / self.edge_mm))
            before_back = 1 / (1 + np.exp((y - self.back_mm) / self.edge_mm))
        return (self.depth_hu * after_front * before_back).astype(np.float32)


def cast_shadow(
    hu: np.ndarray, tissue: np.ndarray, grid: Grid, offset: np.ndarray, shadow: Shadow
) -> None:
    """Darken the (z, y, x) ``hu`` in place wherever there is body (not the air around it)."""
    nz, ny, nx = hu.shape
    step = max(1, SLAB_VOXELS // (ny * nx))
    j, i = np.arange(ny)[None, :, None], np.arange(nx)[None, None, :]
    for z0 in range(0, nz, step):
        k = np.arange(z0, min(z0 + step, nz))[:, None, None]
        _, y, _ = index_points(grid, offset, k, j, i)
        darker = np.broadcast_to(shadow.darkening(y), hu[z0 : z0 + step].shape)
        body = tissue[z0 : z0 + step] != Tissue.AIR
        hu[z0 : z0 + step] -= np.where(body, darker, np.float32(0))
