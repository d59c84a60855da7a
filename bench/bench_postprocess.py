"""Time each post-processing step on a 512 x 512 x 200 phantom label map with the faults a
network leaves: a far-away blob, a hole, a cut notch, tumor voxels outside the liver, specks.

Run: python bench/bench_postprocess.py [seed]
"""

from __future__ import annotations

import sys
import time

import numpy as np


def main() -> None:
    from deepliver.inference.postprocess import (
        MAX_SEALED_CAVITY_ML,
        clean_liver,
        clean_tumors,
        close_mask,
        fill_cavities,
        fill_slice_holes,
        largest_component,
        liver_box,
    )
    from deepliver.phantom import PhantomSpec, make_phantom

    seed = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    phantom = make_phantom(PhantomSpec(seed=seed, size=(512, 512, 200)))
    grid = phantom.labels.grid
    labels = phantom.labels.array
    liver = labels > 0
    tumor = labels == 2
    box = liver_box(liver, grid, 0)
    z, y, x = (int((a + b) // 2) for a, b in zip(box.start, box.stop, strict=True))
    liver[z - 2 : z + 2, y - 4 : y + 4, x - 4 : x + 4] = False  # a hole
    liver[5:15, 10:40, 10:40] = True  # a far blob
    tumor[5:8, 470:480, 470:480] = True  # tumor outside the liver
    rng = np.random.default_rng(seed)
    ends = zip(box.start, box.stop, strict=True)
    for k, j, i in zip(*(rng.integers(b0, b1, 20) for b0, b1 in ends), strict=True):
        tumor[k, j, i] = True  # specks
    print(f"512 x 512 x 200 phantom seed {seed}, spacing {np.round(grid.spacing, 3).tolist()}")
    largest = largest_component(liver)
    filled = fill_cavities(largest)
    closed = close_mask(filled, grid, 5.0)
    limit = MAX_SEALED_CAVITY_ML
    sealed = fill_cavities(closed, grid, limit)
    crop = liver_box(largest, grid, 0)
    print(f"liver box {crop.shape} = {np.prod(crop.shape) / 1e6:.1f} M voxels")
    steps = [  # in the order clean_liver runs them, each on the previous step's output
        ("largest_component", lambda: largest_component(liver)),
        ("fill_cavities (3D)", lambda: fill_cavities(largest)),
        ("close_mask 5 mm", lambda: close_mask(filled, grid, 5.0)),
        ("fill_cavities sealed, limited", lambda: fill_cavities(closed, grid, limit)),
        ("fill_slice_holes", lambda: fill_slice_holes(sealed, grid)),
        ("clean_liver (all five)", lambda: clean_liver(liver, grid)),
        ("clean_tumors", lambda: clean_tumors(tumor, labels > 0, grid)),
        ("liver_box 20 mm", lambda: liver_box(labels > 0, grid, 20.0)),
    ]
    for name, step in steps:
        best = min(_timed(step) for _ in range(3))
        print(f"{name:30s} {best:6.3f} s (best of 3)")


def _timed(step) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
