"""Drawing training batches on the CPU: milliseconds per tumor batch, 2.5D and 3D.

    python bench/bench_draw.py [--batches 40] [--phantoms 6]

Beside a GPU, batches are drawn in one thread while the GPU trains, and a slow draw leaves the
GPU waiting (three 3D tumor runs side by side on an H100 machine took 22 s per epoch of 100
batches, validation included; how much of that was drawing was not measured). Side by side
in the same run, the baseline draws as it did before: the moved liver gate's smooth field made
by SciPy's order-1 zoom (now stretched one axis at a time), and the batch turned into float32
images and int64 targets in the drawing thread (now it goes to the device as uint8 and is
turned into numbers there, in the training step: on a CPU that work only moved). The same
random generator draws the same patches both ways; the printout says whether every batch came
out identical.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from pathlib import Path

import numpy as np

PRESETS = {
    "tumor 2.5D, 16 x 5 x 128 x 128": dict(arch="unet2d", slices=5),
    "tumor 3D, 8 x 96 x 96 x 32": dict(
        arch="unet3d", spacing=(1.0, 1.0, 2.5), patch=(96, 96, 32), batch=8
    ),
}


def zoomed_gate(field: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    from scipy import ndimage

    zoom = [n / k for n, k in zip(shape, field.shape, strict=True)]
    return ndimage.zoom(field, zoom, order=1, grid_mode=False, mode="nearest")


def draw(
    folder: Path, phantoms: int, batches: int, settings: dict, numbers_here: bool = False
) -> tuple[float, str]:
    """Best of three: ms per batch; and a digest of every batch drawn (as drawn, uint8), from
    one more pass outside the timing. ``numbers_here``: also turn each batch into float32 and
    int64, as the thread did before."""
    import torch

    from deepliver.training import data
    from deepliver.training.loop import TrainConfig, initial_card, make_task
    from deepliver.training.patches import as_numbers

    config = TrainConfig(
        stage="tumor", data=f"phantom:{phantoms + 1}", output=folder, validation=1, **settings
    )
    card = initial_card(config)
    train, _ = data.parse_data(config.data).items(1, 0, (192, 192, 64), "tumor")
    cases = data.build_cache(folder / "cache", train, "tumor", card.spacing_mm, card.hu_window)
    task = make_task(card, config.resolved(), "tumor", torch.device("cpu"))
    rng, digest = np.random.default_rng(0), hashlib.sha256()
    for _ in range(batches):
        for tensor in task.draw(cases, rng):
            digest.update(tensor.numpy().tobytes())
    times = []
    for _ in range(3):
        rng = np.random.default_rng(0)
        start = time.perf_counter()
        for _ in range(batches):
            image, target = task.draw(cases, rng)
            if numbers_here:
                as_numbers(image, target)
        times.append((time.perf_counter() - start) / batches * 1000)
    return min(times), digest.hexdigest()


def main() -> None:
    from deepliver.training import patches

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--phantoms", type=int, default=6)
    args = parser.parse_args()
    print(f"tumor batches drawn on the CPU, {args.phantoms} cached phantoms, best of 3 runs")
    print(f"{'batch':34s} {'now ms':>8s} {'before ms':>10s} {'ratio':>6s}  same batches")
    stretched = patches.stretched
    for name, settings in PRESETS.items():
        with tempfile.TemporaryDirectory(prefix="bench-draw-") as folder:
            now, digest = draw(Path(folder), args.phantoms, args.batches, settings)
            patches.stretched = zoomed_gate
            try:
                before, before_digest = draw(
                    Path(folder), args.phantoms, args.batches, settings, numbers_here=True
                )
            finally:
                patches.stretched = stretched
        print(
            f"{name:34s} {now:8.1f} {before:10.1f} {before / now:5.1f}x  "
            f"{'yes' if digest == before_digest else 'NO'}"
        )


if __name__ == "__main__":
    main()
