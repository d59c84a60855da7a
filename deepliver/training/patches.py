"""Random training patches from cached cases, and augmentation that keeps left and right.

No flips (the liver is on the patient's right); instead intensity scale/shift, Gaussian noise,
and a small in-plane zoom and rotation, applied to whole batches with torch. Tumor patches get
a moved liver gate: in the cascade the tumor stage sees the CT blanked beyond the *predicted*
liver, whose edge strays from the true one, and a network trained only on the true gate takes
the tissue it was never shown (stomach, kidney, a missed rim) for tumor. Tumor patches also
get a darker band across them now and then (:func:`darker_band`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from deepliver.models.card import ModelCard
from deepliver.phantom.shadow import DEPTH_HU as SHADOW_DEPTH_HU
from deepliver.training.data import DISTANCE_ZERO, TUMOR_CROP_MARGIN_MM, Case

# How far the moved gate lies from the true liver (mm; < 0 cuts into it). The cascade's gate is
# 5 mm beyond a predicted liver that overshoots by up to about 10 mm or falls short; a cached
# case reaches TUMOR_CROP_MARGIN_MM beyond the liver.
GATE_RANGE_MM = (-5.0, TUMOR_CROP_MARGIN_MM)
GATE_KNOTS = 3  # the gate's offset varies smoothly over a patch: knots per in-plane side

# A darker band across a tumor patch's rows, as the arms' beam hardening draws one
# (deepliver.phantom.shadow: its depth in HU, 60 to 140 mm deep), in the tumor window's units
# (350 HU wide) and the patch's height (128 mm).
BAND_PROBABILITY = 0.3
BAND_DEPTH = tuple(hu / 350 for hu in SHADOW_DEPTH_HU)
BAND_ROWS = (0.45, 1.1)
BAND_EDGE_ROWS = (0.015, 0.06)


def sample_batch(
    cases: list[Case],
    card: ModelCard,
    batch: int,
    rng: np.random.Generator,
    foreground_fraction: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, targets with a channel axis), both uint8: 2.5D stacks or 3D patches. They go to
    the device as bytes, a quarter and an eighth of float32 and int64, and become numbers there
    (:func:`as_numbers`)."""
    px, py, pz = (int(v) for v in card.roi_size)
    if card.architecture == "unet2d":
        pz = 1
    images, targets = [], []
    for _ in range(batch):
        case = cases[int(rng.integers(len(cases)))]
        shape = np.array(case.image.shape)
        patch = np.array([pz, py, px])
        if len(case.foreground) and rng.random() < foreground_fraction:
            centre = case.foreground[int(rng.integers(len(case.foreground)))].astype(np.int64)
            jitter = (rng.uniform(-0.4, 0.4, 3) * patch).astype(np.int64)
            start = centre + jitter - patch // 2
        else:
            start = np.array(
                [
                    rng.integers(-(p // 4), max(1, n - p + p // 4 + 1))
                    for n, p in zip(shape, patch, strict=True)
                ]
            )
        image, target = _patch(case, card, start, patch, rng)
        images.append(image)
        targets.append(target)
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(targets))


def as_numbers(image: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A :func:`sample_batch` batch as the network and loss take it: image 0..1 float32,
    target int64."""
    return image.float().div_(255.0), target.long()


def _patch(case: Case, card: ModelCard, start, patch, rng) -> tuple[np.ndarray, np.ndarray]:
    """(image, target) uint8 at ``start``: a 2.5D stack and its middle slice's target, or a 3D
    patch and its target, each with a leading channel axis."""
    if card.architecture == "unet2d":
        nz = case.image.shape[0]
        k = int(np.clip(start[0], 0, nz - 1))
        context = np.arange(-card.context_slices, card.context_slices + 1)
        ks = np.clip(k + context, 0, nz - 1)

        def window(array, slices=ks, fill=0):
            return _window2d(array, slices, start[1:], patch[1:], fill)

        target = window(case.target, [k])
    else:

        def window(array, fill=0):
            return _window3d(array, start, patch, fill)[None]

        target = window(case.target)
    if case.ungated is None:
        return window(case.image), target
    image, inside = moved_gate(window(case.ungated), window(case.liver_distance, fill=255), rng)
    if card.architecture == "unet2d":  # the stack's channels are slices; the target is the middle
        inside = inside[len(inside) // 2][None]
    return image, np.where(inside, target, 0).astype(np.uint8)


def moved_gate(
    ungated: np.ndarray, liver_distance: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8 blanked beyond a randomly moved liver gate, the shown voxels) for windows of
    a case's ``ungated`` and ``liver_distance`` arrays, (c, h, w) or (1, d, h, w): the gate's
    offset varies over the last axes and is the same along the first (a 2.5D stack's slices)."""
    distance = liver_distance.astype(np.float32) - DISTANCE_ZERO
    inside = distance <= random_gate(distance.shape[1:], rng)
    return np.where(inside, ungated, 0).astype(np.uint8), inside


def random_gate(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A smooth field (float32, ``shape``) of gate offsets in mm within GATE_RANGE_MM: a few
    random knots per side, linearly interpolated, so the gate bulges out here and in there."""
    knots = [min(GATE_KNOTS, n) for n in shape]
    field = rng.uniform(*GATE_RANGE_MM, size=knots).astype(np.float32)
    return stretched(field, shape)


def stretched(field: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``field`` linearly interpolated to ``shape``, its first and last values on the first and
    last voxels (as ``scipy.ndimage.zoom(order=1, grid_mode=False)``), one axis at a time: a
    tenth of zoom's time, which was most of the time drawing a 3D patch took."""
    out = field.astype(np.float64)
    for axis, n in enumerate(shape):
        weights = _linear_weights(out.shape[axis], n)
        out = np.moveaxis(np.tensordot(weights, np.moveaxis(out, axis, 0), axes=(1, 0)), 0, axis)
    return out.astype(np.float32)


def _linear_weights(knots: int, n: int) -> np.ndarray:
    """(n, knots): the weights of the knots at each of n evenly spread places."""
    if knots == 1:
        return np.ones((n, 1))
    place = np.arange(n) * ((knots - 1) / max(1, n - 1))
    low = np.minimum(place.astype(np.int64), knots - 2)
    above = place - low
    weights = np.zeros((n, knots))
    weights[np.arange(n), low] = 1.0 - above
    weights[np.arange(n), low + 1] = above
    return weights


def _window2d(array, ks, start_yx, size_yx, fill: int = 0) -> np.ndarray:
    """array[ks, y0:y0+h, x0:x0+w] with ``fill`` where it reaches outside."""
    out = np.full((len(ks), *size_yx), fill, dtype=np.uint8)
    ny, nx = array.shape[1:]
    y0, x0 = int(start_yx[0]), int(start_yx[1])
    ys, xs = max(0, y0), max(0, x0)
    ye, xe = min(ny, y0 + size_yx[0]), min(nx, x0 + size_yx[1])
    if ye > ys and xe > xs:
        out[:, ys - y0 : ye - y0, xs - x0 : xe - x0] = array[ks][:, ys:ye, xs:xe]
    return out


def _window3d(array, start, size, fill: int = 0) -> np.ndarray:
    out = np.full(tuple(size), fill, dtype=np.uint8)
    lo = np.maximum(0, start)
    hi = np.minimum(array.shape, start + size)
    if np.all(hi > lo):
        source = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        target = tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start, strict=True))
        out[target] = array[source]
    return out


def augment(
    image: torch.Tensor, target: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Intensity jitter, noise, small zoom and in-plane rotation (no flips), on the device of
    ``image`` and ``generator``."""
    n, device = image.shape[0], generator.device

    def uniform(low, high):
        return _uniform(generator, n, low, high)

    spatial = image.dim() - 2
    view = (n,) + (1,) * (spatial + 1)
    scale = uniform(0.85, 1.15).view(view)
    shift = uniform(-0.08, 0.08).view(view)
    noise = uniform(0.0, 0.03).view(view) * torch.randn(
        image.shape, generator=generator, device=device
    )
    image = (image * scale + shift + noise).clamp_(0.0, 1.0)

    zoom = uniform(0.85, 1.15)
    angle = uniform(-10.0, 10.0) * math.pi / 180
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.zeros(n, spatial, spatial + 1, device=device)
    # In-plane (x, y) rotation and zoom; z (3D) untouched.
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
    if spatial == 3:
        theta[:, 2, 2] = 1.0
    grid = F.affine_grid(theta, list(image.shape), align_corners=False)
    image = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    target = F.grid_sample(
        target.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False
    ).long()
    return image, target


def darker_band(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Some patches with a darker band across their rows (anterior-posterior), their zeros
    (blanked, or below the window) left alone. Only 3 phantoms in 10 draw a band, and a darker
    stretch of liver is what a hypodense tumor looks like: the tumor stage sees more of them."""
    n, rows, device = image.shape[0], image.shape[-2], generator.device

    def uniform(low, high):
        return _uniform(generator, n, low, high, 1)

    banded = uniform(0.0, 1.0) < BAND_PROBABILITY
    depth = uniform(*BAND_DEPTH) * banded
    front = uniform(-0.6, 1.0) * rows
    back = front + uniform(*BAND_ROWS) * rows
    edge = uniform(*BAND_EDGE_ROWS) * rows
    y = torch.arange(rows, device=device, dtype=image.dtype)[None, :]
    darker = depth * torch.sigmoid((y - front) / edge) * torch.sigmoid((back - y) / edge)
    darker = darker.view(n, *(1,) * (image.dim() - 3), rows, 1)
    return torch.where(image > 0, (image - darker).clamp_(min=0.0), image)


def _uniform(generator: torch.Generator, n: int, low: float, high: float, *shape) -> torch.Tensor:
    """(n, *shape) uniform draws in [low, high) on the generator's device."""
    return low + (high - low) * torch.rand(n, *shape, generator=generator, device=generator.device)
