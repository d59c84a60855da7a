"""Training throughput of the 2D U-Net on 256 x 256 slices: the cached pipeline (volumes
preprocessed once, memory-mapped) against a naive one that reads a NIfTI volume, resamples and
windows it for every slice of every batch, side by side on the same network and batch size.

Run: python bench/bench_train.py [--steps 20] [--batch 8]

The seed project's figure to beat: about 1.1 slices per second (47,150 slices in 11.5 hours).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SEED_FIGURE = 47150 / (11.5 * 3600)
TARGET_RATIO = 3.0
SPACING = (1.5, 1.5, 2.5)
PATCH = (256, 256, 1)


def make_dataset(folder: Path, cases: int) -> None:
    from deepliver.io.image_files import write_image
    from deepliver.phantom import PhantomSpec, make_phantom

    for number in range(cases):
        phantom = make_phantom(PhantomSpec(seed=900 + number, size=(256, 256, 64)))
        write_image(phantom.ct, folder / "imagesTr" / f"liver_{number}_0000.nii.gz")
        write_image(phantom.labels, folder / "labelsTr" / f"liver_{number}.nii.gz")


def setup(batch: int):
    from deepliver.models.networks import build_network
    from deepliver.training.loop import PRESETS, TrainConfig, initial_card, make_task

    config = TrainConfig(
        arch="unet2d", stage="liver", data="phantom:1", output=Path("."), patch=PATCH
    )
    card = initial_card(config).with_updates(spacing_mm=SPACING)
    preset = {**PRESETS[("liver", "unet2d")], "batch": batch}
    torch.manual_seed(0)
    network = build_network(card)
    return card, network, make_task(card, preset, "liver")


def cached(folder: Path, steps: int, batch: int) -> float:
    from deepliver.training import data

    card, network, task = setup(batch)
    source = data.parse_data(str(folder))
    items, _ = source.items(0, 0)
    cases = data.build_cache(folder / "cache", items, "liver", SPACING, card.hu_window)
    return _time_steps(
        network, lambda rng, gen: task.loss(network, task.draw(cases, rng), gen), steps, batch
    )


def naive(folder: Path, steps: int, batch: int) -> float:
    """Every slice: read the volume from NIfTI, resample, window, cut the slice out."""
    from monai.losses import DiceCELoss

    from deepliver.io.image_files import read_image
    from deepliver.models.predict import normalise

    card, network, _ = setup(batch)
    loss_function = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)
    images = sorted((folder / "imagesTr").glob("*.nii.gz"))

    def loss(rng, generator):
        inputs, targets = [], []
        for _ in range(batch):
            number = int(rng.integers(len(images)))
            ct = read_image(images[number]).resampled_to_spacing(SPACING)
            labels = read_image(folder / "labelsTr" / f"liver_{number}.nii.gz")
            labels = labels.resampled_onto(ct.grid, label=True).array
            image = normalise(ct.array, card.hu_window)
            k = int(rng.integers(1, image.shape[0] - 1))
            inputs.append(_square(image[k - 1 : k + 2]))
            targets.append(_square((labels[k : k + 1] > 0).astype(np.float32)))
        x = torch.from_numpy(np.stack(inputs))
        y = torch.from_numpy(np.stack(targets)).long()
        return loss_function(network(x), y)

    return _time_steps(network, loss, steps, batch)


def _square(planes: np.ndarray) -> np.ndarray:
    out = np.zeros((planes.shape[0], *PATCH[1::-1]), dtype=np.float32)
    h, w = min(planes.shape[1], PATCH[1]), min(planes.shape[2], PATCH[0])
    out[:, :h, :w] = planes[:, :h, :w]
    return out


def _time_steps(network, loss, steps: int, batch: int) -> float:
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    generator = torch.Generator().manual_seed(0)
    network.train()
    for number in range(steps + 2):
        if number == 2:  # two warm-up steps
            start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        value = loss(rng, generator)
        value.backward()
        optimizer.step()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--cases", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        make_dataset(folder, args.cases)
        fast = cached(folder, args.steps, args.batch)
        slow = naive(folder, args.steps, args.batch)
    print(f"2D U-Net (2.5D, 3 slices), 256 x 256 slices, batch {args.batch}, {args.steps} steps")
    print(f"  cached pipeline   {fast:7.2f} slices/s")
    print(f"  naive (NIfTI)     {slow:7.2f} slices/s")
    print(
        f"  ratio             {fast / slow:7.1f}x   (target >= {TARGET_RATIO:g}x: "
        f"{'PASS' if fast / slow >= TARGET_RATIO else 'FAIL'})"
    )
    print(f"  seed project      {SEED_FIGURE:7.2f} slices/s -> cached is {fast / SEED_FIGURE:.0f}x")


if __name__ == "__main__":
    main()
