"""Draw the extension and module icons (128x128 RGBA PNG) with numpy and SimpleITK.

    .venv/bin/python Utilities/make_icons.py

A liver-like shape (a wide right lobe tapering to a thin left lobe) in the liver colour of the
terminology table; each module adds one mark: Review a check, Inference a tumor, Training bars.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from deepliver.annotation.structures import LIVER, TUMOR

ROOT = Path(__file__).resolve().parents[1]
SIZE = 128
SUPERSAMPLE = 4


def _grid() -> tuple[np.ndarray, np.ndarray]:
    n = SIZE * SUPERSAMPLE
    coords = (np.arange(n) + 0.5) / n  # 0..1, y down
    return np.meshgrid(coords, coords)


def _ellipse(x, y, cx, cy, rx, ry, angle_deg=0.0) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    u = (x - cx) * np.cos(a) + (y - cy) * np.sin(a)
    v = -(x - cx) * np.sin(a) + (y - cy) * np.cos(a)
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def liver_mask(x, y) -> np.ndarray:
    right_lobe = _ellipse(x, y, 0.36, 0.52, 0.28, 0.33, -10)
    left_lobe = _ellipse(x, y, 0.62, 0.40, 0.33, 0.15, -18)
    notch = _ellipse(x, y, 0.60, 0.72, 0.22, 0.16, 0)  # the hilum cut out below
    return (right_lobe | left_lobe) & ~notch


def _segment(x, y, p, q, width) -> np.ndarray:
    p, q = np.asarray(p, float), np.asarray(q, float)
    d = q - p
    t = np.clip(((x - p[0]) * d[0] + (y - p[1]) * d[1]) / (d @ d), 0, 1)
    return np.hypot(x - (p[0] + t * d[0]), y - (p[1] + t * d[1])) <= width / 2


def _marks(kind: str, x, y) -> list[tuple[np.ndarray, tuple[int, int, int]]]:
    white = (255, 255, 255)
    if kind == "review":
        check = _segment(x, y, (0.22, 0.50), (0.34, 0.64), 0.07) | _segment(
            x, y, (0.34, 0.64), (0.58, 0.34), 0.07
        )
        return [(check, white)]
    if kind == "inference":
        return [(_ellipse(x, y, 0.38, 0.50, 0.11, 0.11), TUMOR.color)]
    if kind == "training":
        bars = np.zeros_like(x, dtype=bool)
        for i, height in enumerate((0.14, 0.24, 0.34)):
            left = 0.20 + i * 0.13
            bars |= (x >= left) & (x <= left + 0.08) & (y <= 0.70) & (y >= 0.70 - height)
        return [(bars, white)]
    return []


def draw(kind: str) -> np.ndarray:
    x, y = _grid()
    rgba = np.zeros(x.shape + (4,), dtype=np.float64)
    layers = [(liver_mask(x, y), LIVER.color), *_marks(kind, x, y)]
    for mask, color in layers:
        rgba[mask, :3] = color
        rgba[mask, 3] = 255
    # Average each SUPERSAMPLE x SUPERSAMPLE block: smooth edges (colour weighted by alpha).
    blocks = rgba.reshape(SIZE, SUPERSAMPLE, SIZE, SUPERSAMPLE, 4).mean(axis=(1, 3))
    alpha = blocks[..., 3:4]
    premultiplied = rgba[..., :3] * (rgba[..., 3:4] / 255)
    color = premultiplied.reshape(SIZE, SUPERSAMPLE, SIZE, SUPERSAMPLE, 3).mean(axis=(1, 3))
    color = np.where(alpha > 0, color * 255 / np.maximum(alpha, 1e-9), 0)
    return np.round(np.concatenate([color, alpha], axis=-1)).clip(0, 255).astype(np.uint8)


def write_png(rgba: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(rgba, isVector=True), str(path))


def main() -> None:
    targets = {
        ROOT / "DeepLiver.png": "extension",
        ROOT / "DeepLiverReview/Resources/Icons/DeepLiverReview.png": "review",
        ROOT / "DeepLiverInference/Resources/Icons/DeepLiverInference.png": "inference",
        ROOT / "DeepLiverTraining/Resources/Icons/DeepLiverTraining.png": "training",
    }
    for path, kind in targets.items():
        write_png(draw(kind), path)
        print(f"Wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
