"""Networks built from a model card: MONAI's own U-Net, or one of the detectors."""

from __future__ import annotations

import torch
from monai.networks.nets import UNet

from deepliver.models.card import ModelCard


def build_network(card: ModelCard) -> torch.nn.Module:
    """The network a card describes: a detector (see :mod:`deepliver.detection.networks`) or a
    MONAI ``UNet``: 2D over ``in_channels`` adjacent slices (unet2d) or 3D (unet3d).

    Input (batch, in_channels, y, x) or (batch, 1, z, y, x), each spatial size a multiple of
    :func:`size_multiple`; output logits with one channel per label.
    """
    if card.is_detector:
        from deepliver.detection.networks import build_detector

        return build_detector(card)
    return UNet(
        spatial_dims=card.spatial_dims,
        in_channels=card.in_channels,
        out_channels=card.out_channels,
        channels=tuple(card.channels),
        strides=tuple(card.strides),
        num_res_units=card.num_res_units,
        norm="instance",
    )


def size_multiple(card: ModelCard) -> int:
    """Every spatial input size must be a multiple of this (the product of the strides)."""
    multiple = 1
    for stride in card.strides:
        multiple *= stride
    return multiple


def count_parameters(network: torch.nn.Module) -> int:
    return sum(p.numel() for p in network.parameters())
