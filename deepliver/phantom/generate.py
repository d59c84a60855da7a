"""make_phantom: spec -> CT volume (int16 HU) + label map (0 background, 1 liver, 2 tumor)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepliver.phantom.anatomy import random_anatomy
from deepliver.phantom.geometry import choose_grid
from deepliver.phantom.render import paint_parts, scan_circle_mask, to_hu
from deepliver.phantom.shadow import Shadow, cast_shadow
from deepliver.phantom.spec import PhantomSpec
from deepliver.phantom.tissues import PHASES, sample_palette
from deepliver.phantom.tumors import Tumor, place_tumors, tumor_parts
from deepliver.volume import Volume

PADDING_VALUES = (-1024, -2048, -3024)  # -1024: the scanner wrote plain air outside the circle


@dataclass(frozen=True)
class Phantom:
    ct: Volume  # int16 HU
    labels: Volume  # uint8 on the same grid: 0 background, 1 liver, 2 tumor
    tumors: list[Tumor]
    phase: str
    spec: PhantomSpec
    tissue: Volume | None = None  # uint8 tissue ids (tissues.Tissue) on the same grid
    palette: np.ndarray | None = None  # HU drawn for each tissue id, before noise and blur
    shadow: Shadow | None = None  # a darker band from the arms (shadow.py), when drawn


def make_phantom(spec: PhantomSpec | None = None) -> Phantom:
    """A synthetic abdominal CT with liver and tumor labels; the same spec gives the same arrays."""
    spec = spec or PhantomSpec()
    spec.validate()
    rng = np.random.default_rng(spec.seed)
    drawn_phase = str(PHASES[rng.integers(len(PHASES))])  # drawn always: same anatomy per seed
    phase = spec.phase or drawn_phase

    anatomy = random_anatomy(rng)
    liver_low, liver_high = anatomy.liver.bounds()
    grid, offset = choose_grid(spec, rng, 2 * anatomy.body.half_width, (liver_low[2], 0.0))

    tissue = np.zeros(grid.shape, dtype=np.uint8)
    label = np.zeros(grid.shape, dtype=np.uint8)
    paint_parts(anatomy.parts, grid, offset, tissue, label)

    palette = sample_palette(rng, phase)
    count = int(rng.integers(spec.n_tumors[0], spec.n_tumors[1] + 1))
    placed = place_tumors(rng, count, spec.tumor_diameter_mm, anatomy.liver, label, grid, offset)
    parts, tumors = tumor_parts(rng, placed, phase, palette, offset)
    paint_parts(parts, grid, offset, tissue, label)

    size = (2 * anatomy.body.half_width - 280) / 120
    noise_std = float(np.clip(rng.uniform(8, 24) + 8 * size, 8, 30))
    blur_mm = (rng.uniform(0.4, 0.8),) * 2 + (0.4 * grid.spacing[2],)
    hu = to_hu(tissue, palette, grid.spacing, blur_mm, noise_std, rng)
    shadow = Shadow.drawn(spec.seed, anatomy.body)
    if shadow is not None:
        cast_shadow(hu, tissue, grid, offset, shadow)
    ct = _to_int16(hu, grid, int(rng.choice(PADDING_VALUES)))
    del hu
    return Phantom(
        Volume(ct, grid),
        Volume(label, grid),
        tumors,
        phase,
        spec,
        Volume(tissue, grid),
        palette,
        shadow,
    )


def _to_int16(hu: np.ndarray, grid, padding: int) -> np.ndarray:
    """Round and clip like a scanner (-1024..3071), then pad outside the scan circle."""
    np.clip(hu, -1024, 3071, out=hu)
    ct = np.empty(hu.shape, dtype=np.int16)
    np.rint(hu, out=hu)
    ct[...] = hu
    if padding != -1024:
        ct[:, ~scan_circle_mask(grid)] = padding
    return ct
