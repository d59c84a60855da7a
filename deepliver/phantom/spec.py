"""What phantom to make: the user-facing options, checked before any work starts."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from deepliver.errors import DeepLiverError
from deepliver.phantom.tissues import MAX_TUMORS, PHASES

ORIENTATIONS = ("axial", "oblique")


@dataclass
class PhantomSpec:
    """Options of :func:`deepliver.phantom.make_phantom`; whatever is left open comes from seed."""

    seed: int = 0
    size: tuple[int, int, int] = (256, 256, 96)  # (x, y, z) voxels
    spacing: tuple[float, float, float] | None = None  # (x, y, z) mm; None = from the seed
    n_tumors: tuple[int, int] = (1, 4)  # inclusive range
    tumor_diameter_mm: tuple[float, float] = (5, 80)
    orientation: str = "axial"  # or "oblique"
    phase: str | None = None  # "native" | "arterial" | "portal"; None = from the seed

    def validate(self) -> None:
        """Raise DeepLiverError naming the first bad option."""
        if not _is_number(self.seed, int) or self.seed < 0:
            raise DeepLiverError(f"phantom seed must be a non-negative integer, got {self.seed!r}")
        _check_triple(self.size, "size", kind=int, low=8)
        if self.spacing is not None:
            _check_triple(self.spacing, "spacing", kind=float, low=1e-3)
        low, high = _check_pair(self.n_tumors, "n_tumors", kind=int)
        if low < 0 or high > MAX_TUMORS:
            raise DeepLiverError(
                f"n_tumors must lie within 0..{MAX_TUMORS}, got {tuple(self.n_tumors)}"
            )
        low, high = _check_pair(self.tumor_diameter_mm, "tumor_diameter_mm", kind=float)
        if low < 2 or high > 200:
            raise DeepLiverError(
                f"tumor_diameter_mm must lie within 2..200 mm, got {tuple(self.tumor_diameter_mm)}"
            )
        if self.orientation not in ORIENTATIONS:
            raise DeepLiverError(
                f"orientation must be one of {', '.join(ORIENTATIONS)}, got {self.orientation!r}"
            )
        if self.phase is not None and self.phase not in PHASES:
            raise DeepLiverError(
                f"phase must be one of {', '.join(PHASES)} or None, got {self.phase!r}"
            )


def _check_triple(values, name: str, kind: type, low: float) -> None:
    try:
        items = tuple(values)
    except TypeError:
        raise DeepLiverError(f"{name} must be 3 numbers (x, y, z), got {values!r}") from None
    if len(items) != 3 or not all(_is_number(v, kind) for v in items):
        raise DeepLiverError(f"{name} must be 3 {kind.__name__}s (x, y, z), got {values!r}")
    if min(items) < low:
        raise DeepLiverError(f"{name} values must be at least {low}, got {values!r}")


def _check_pair(values, name: str, kind: type) -> tuple:
    try:
        items = tuple(values)
    except TypeError:
        raise DeepLiverError(f"{name} must be a (low, high) pair, got {values!r}") from None
    if len(items) != 2 or not all(_is_number(v, kind) for v in items):
        raise DeepLiverError(
            f"{name} must be a (low, high) pair of {kind.__name__}s, got {values!r}"
        )
    if items[0] > items[1]:
        raise DeepLiverError(f"{name} low must not exceed high, got {values!r}")
    return items


def _is_number(value, kind: type) -> bool:
    if isinstance(value, bool):
        return False
    if kind is int:
        return isinstance(value, numbers.Integral)
    return isinstance(value, numbers.Real) and math.isfinite(value)
