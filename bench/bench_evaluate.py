"""Evaluation speed on one 512 x 512 x 200 case (liver + tumors), against MONAI's own metric
functions called one per metric on the whole volume, as a plain script would.

Run: python bench/bench_evaluate.py [seed]

The prediction is the truth shifted by one voxel in x and y, with its largest lesion turned
into liver and a few specks added, so every metric has work to do. Target: a few seconds.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
from scipy import ndimage

TARGET_SECONDS = 5.0


def prediction_from(truth: np.ndarray, seed: int) -> np.ndarray:
    predicted = np.roll(truth, (1, 1), axis=(1, 2))
    components, _ = ndimage.label(predicted == 2, structure=np.ones((3, 3, 3)))
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    predicted[components == np.argmax(sizes)] = 1
    rng = np.random.default_rng(seed)
    liver = np.argwhere(predicted == 1)
    for k, j, i in liver[rng.integers(0, len(liver), 15)]:
        predicted[k, j - 1 : j + 2, i - 1 : i + 2] = 2
    return predicted


def ours(prediction, truth, spacing_zyx) -> float:
    from deepliver.evaluation.evaluate import score_case
    from deepliver.volume import Volume

    grid = truth.grid
    start = time.perf_counter()
    score_case("bench", "case", Volume(prediction, grid), truth, None, 2.0)
    return time.perf_counter() - start


def monai_per_metric(prediction, truth, spacing_zyx) -> float:
    """HD, HD95, ASSD and surface Dice with MONAI's compute_* functions, per structure."""
    from monai.metrics import (
        compute_average_surface_distance,
        compute_hausdorff_distance,
        compute_surface_dice,
    )

    spacing = [float(s) for s in spacing_zyx]
    start = time.perf_counter()
    for values in ((1, 2), (2,)):
        p = torch.from_numpy(np.isin(prediction, values))[None, None]
        t = torch.from_numpy(np.isin(truth, values))[None, None]
        p2, t2 = torch.cat([~p, p], 1), torch.cat([~t, t], 1)
        compute_hausdorff_distance(p2, t2, spacing=spacing)
        compute_hausdorff_distance(p2, t2, percentile=95, spacing=spacing)
        compute_average_surface_distance(p2, t2, symmetric=True, spacing=spacing)
        compute_surface_dice(p2, t2, class_thresholds=[2.0], spacing=spacing)
    return time.perf_counter() - start


def main() -> None:
    from deepliver.phantom import PhantomSpec, make_phantom

    seed = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    truth = make_phantom(PhantomSpec(seed=seed, size=(512, 512, 200))).labels
    prediction = prediction_from(truth.array, seed)
    spacing = truth.grid.spacing[::-1]
    ours(prediction, truth, spacing)  # warm up: imports torch and MONAI
    mine = min(ours(prediction, truth, spacing) for _ in range(3))
    baseline = monai_per_metric(prediction, truth.array, spacing)
    print(f"case 512x512x200, spacing (z, y, x) {np.round(spacing, 2).tolist()} mm, seed {seed}")
    print("evaluation of liver + tumor (all metrics, lesion matching), best of 3:")
    print(f"  deepliver score_case          {mine:6.2f} s")
    print(f"  MONAI compute_* per metric     {baseline:6.2f} s  (surface metrics only, one run)")
    print(f"  ratio                          {baseline / mine:6.1f}x")
    print(f"target (<= {TARGET_SECONDS:g} s): {'PASS' if mine <= TARGET_SECONDS else 'FAIL'}")


if __name__ == "__main__":
    main()
