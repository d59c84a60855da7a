"""Run a model on a CT volume: resample to the card's spacing, window, infer, map back.

unet2d models see 2.5D stacks (the slice and its neighbours along the model grid's k axis as
channels, edge slices repeated) in batches of slices; unet3d models run under MONAI's
``SlidingWindowInferer`` with the card's ROI. Tumor models run twice, on the liver's crop and
on its mirror image. Work is done in chunks, so memory stays bounded by the volume on the
model grid (float32, twice for the tumor crop) plus one batch.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.inferers import SlidingWindowInferer

from deepliver.models.card import ModelCard
from deepliver.models.networks import size_multiple
from deepliver.volume import Volume

SLICE_BATCH = 16  # unet2d: slices per forward pass
MIRRORED_STAGES = ("tumor",)  # averaged with their left-right mirror (predict_probability)


def normalise(hu: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """HU clipped to the window and scaled to [0, 1], float32; NaN counts as the window's low."""
    low, high = float(window[0]), float(window[1])
    out = np.asarray(hu, dtype=np.float32)
    out = np.nan_to_num(out, nan=low, posinf=high, neginf=low) if out.dtype.kind == "f" else out
    out = (np.clip(out, low, high) - np.float32(low)) * np.float32(1.0 / (high - low))
    return out.astype(np.float32, copy=False)


def normalise_uint8(hu: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """:func:`normalise` as 0..255 uint8: the images training caches, slice exports and the
    detectors see."""
    return np.rint(normalise(hu, window) * 255.0).astype(np.uint8)


def to_model_grid(volume: Volume, card: ModelCard) -> Volume:
    """The HU volume resampled (linear) to the card's spacing over the same box of space, its
    axes in patient order whatever order the file stored them in."""
    return volume.resampled_to_spacing(card.spacing_mm)


def foreground_probability(
    model: torch.nn.Module, card: ModelCard, image: np.ndarray, device="cpu"
) -> np.ndarray:
    """P(not background) per voxel of a normalised (z, y, x) float32 image, float32."""
    device = torch.device(device)
    with torch.inference_mode():
        if card.architecture == "unet2d":
            return _slices_2d(model, card, image, device)
        return _sliding_3d(model, card, image, device)


def _foreground(logits: torch.Tensor) -> torch.Tensor:
    return 1.0 - torch.softmax(logits.float(), dim=1)[:, :1]


def _pad_to_multiple(sizes, multiple: int) -> list[int]:
    return [(-n) % multiple for n in sizes]


def _slices_2d(model, card: ModelCard, image: np.ndarray, device) -> np.ndarray:
    nz, ny, nx = image.shape
    pad_y, pad_x = _pad_to_multiple((ny, nx), size_multiple(card))
    context = card.context_slices
    offsets = np.arange(-context, context + 1)
    result = np.empty(image.shape, dtype=np.float32)
    for start in range(0, nz, SLICE_BATCH):
        ks = np.arange(start, min(nz, start + SLICE_BATCH))
        index = np.clip(ks[:, None] + offsets[None, :], 0, nz - 1)
        batch = torch.from_numpy(np.ascontiguousarray(image[index])).to(device)
        if pad_y or pad_x:
            batch = torch.nn.functional.pad(batch, (0, pad_x, 0, pad_y))
        probability = _foreground(model(batch))[:, 0, :ny, :nx]
        result[ks] = probability.cpu().numpy()
    return result


def _sliding_3d(model, card: ModelCard, image: np.ndarray, device) -> np.ndarray:
    roi = tuple(int(v) for v in card.roi_size[::-1])  # (x, y, z) -> (z, y, x)
    # Windows go to the model's device, the stitched volume stays in host memory.
    inferer = SlidingWindowInferer(
        roi_size=roi,
        sw_batch_size=2,
        overlap=0.25,
        mode="gaussian",
        sw_device=device,
        device=torch.device("cpu"),
    )
    tensor = torch.from_numpy(np.ascontiguousarray(image))[None, None]
    output = inferer(tensor, lambda patch: _foreground(model(patch)))
    return output[0, 0].cpu().numpy().astype(np.float32, copy=False)


def predict_probability(model: torch.nn.Module, card: ModelCard, volume: Volume, device="cpu"):
    """P(foreground: liver or tumor, per the card's stage) as float32 on the MODEL grid.

    A tumor model's answer is the mean of its answers on the crop and on the crop mirrored left
    to right (the tumor stage sees the liver alone, blanked around, where a mirror image is as
    plausible as the original). On 20 validation phantoms (seeds 110-129) this raised tumor
    Dice from 0.552 to 0.570; mirroring up-down as well gave 0.567. The liver stage sees the
    whole abdomen, whose mirror image it never trained on: there the same mean dropped liver
    Dice from 0.950 to 0.899, so it runs once.
    """
    resampled = to_model_grid(volume, card)
    grid = resampled.grid
    image = normalise(resampled.array, card.hu_window)
    del resampled
    probability = foreground_probability(model, card, image, device)
    if card.stage in MIRRORED_STAGES:
        mirrored = np.ascontiguousarray(image[..., ::-1])
        probability += foreground_probability(model, card, mirrored, device)[..., ::-1]
        probability *= np.float32(0.5)
    return Volume(probability, grid)


def predict_mask(
    model: torch.nn.Module, card: ModelCard, volume: Volume, device="cpu", threshold: float = 0.5
) -> Volume:
    """uint8 mask (1 = the card's foreground) on the input volume's exact grid."""
    return mask_of(probability_on_grid(model, card, volume, device), threshold)


def probability_on_grid(
    model: torch.nn.Module, card: ModelCard, volume: Volume, device="cpu"
) -> Volume:
    """P(foreground) as uint8 (0..255) on the input volume's exact grid.

    The probability goes back onto the input grid as uint8, resampled linearly, and is
    thresholded there (:func:`mask_of`): smoother edges than a nearest-neighbour coarse mask,
    and no float copy at the input's full size. Input voxels beyond the model grid's last
    samples (it may stop up to half a model voxel short) take the nearest sample's answer.
    """
    probability = predict_probability(model, card, volume, device)
    scaled = np.rint(probability.array * 255.0).astype(np.uint8)
    return probability.with_array(scaled).resampled_onto(volume.grid, extrapolate=True)


def mask_of(probability: Volume, threshold: float = 0.5) -> Volume:
    """uint8 mask where a :func:`probability_on_grid` volume reaches ``threshold``."""
    level = int(np.ceil(threshold * 255.0))
    return probability.with_array((probability.array >= level).astype(np.uint8))


def dice(prediction: np.ndarray, reference: np.ndarray) -> float:
    """Dice of two masks (non-zero = inside); 1.0 when both are empty."""
    a = np.asarray(prediction) != 0
    b = np.asarray(reference) != 0
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(a, b).sum()) / total
