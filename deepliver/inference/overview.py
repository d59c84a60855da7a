"""A PNG a person can glance at to judge a result: a few slices with liver and tumor outlines.

Panels show the slices with the most tumor and the liver's middle slice, in a soft-tissue
window (W 400 / L 40), each labelled with its slice number and position. The volume is first
viewed in patient order (:meth:`deepliver.volume.Volume.patient_ordered`, no resampling), so
panels are axial slices in the radiological view, the patient's right on the image's left and
anterior up, whatever order the file stored (RAS, head first, sagittal); slice numbers count
from the feet. An oblique grid stays oblique; the letters on the panel's left and top edges
name the patient directions that lie there, so no view is ever ambiguous.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from deepliver.annotation.structures import LIVER, TUMOR
from deepliver.io.atomic import write_atomically
from deepliver.volume import Grid, Volume

WINDOW_WIDTH = 400.0
WINDOW_LEVEL = 40.0
PANEL_PX = 320  # longest side of one panel
MIN_SEPARATION_MM = 15.0  # two tumor panels closer than this would show the same thing
LIVER_COLOR = (255, 170, 60)  # warm orange: stands out on grey, apart from the tumor's green
TUMOR_COLOR = (80, 255, 80)
TEXT_COLOR = (255, 255, 255)
_LPS_LETTERS = (("R", "L"), ("A", "P"), ("I", "S"))  # the letter for the -axis, the +axis


def choose_slices(labels: np.ndarray, grid: Grid, n_slices: int = 4) -> list[int]:
    """Slice indices (sorted): the liver's middle and the slices with the most tumor, spread
    at least ``MIN_SEPARATION_MM`` apart; evenly spread liver slices fill any free places."""
    liver_per_slice = (labels > 0).sum(axis=(1, 2))
    tumor_per_slice = (labels == TUMOR.label).sum(axis=(1, 2))
    if not liver_per_slice.any():
        return sorted({int(k) for k in np.linspace(0, labels.shape[0] - 1, n_slices).round()})
    liver_slices = np.flatnonzero(liver_per_slice)
    middle = int(liver_slices[len(liver_slices) // 2])
    chosen = [middle]
    apart = max(1, int(np.ceil(MIN_SEPARATION_MM / grid.spacing[2])))
    for k in np.argsort(-tumor_per_slice, kind="stable"):
        if len(chosen) >= n_slices or tumor_per_slice[k] == 0:
            break
        if all(abs(int(k) - c) >= apart for c in chosen):
            chosen.append(int(k))
    for k in np.linspace(liver_slices[0], liver_slices[-1], n_slices + 2)[1:-1].round():
        if len(chosen) >= n_slices:
            break
        if int(k) not in chosen:
            chosen.append(int(k))
    return sorted(chosen)


def write_overview(ct: Volume, labels: Volume, path: Path, n_slices: int = 4) -> Path:
    """Write the overview PNG of ``labels`` (0/1/2) over ``ct`` to ``path``, atomically."""
    ct.require_same_grid(labels)
    ct, labels = ct.patient_ordered(), labels.patient_ordered()
    grid = labels.grid
    slices = choose_slices(labels.array, grid, n_slices)
    panels = [_panel(ct.array[k], labels.array[k], grid, k) for k in slices]
    columns = min(len(panels), 4)
    rows = -(-len(panels) // columns)
    width = max(p.width for p in panels)
    height = max(p.height for p in panels)
    header = 24
    sheet = Image.new("RGB", (columns * width, header + rows * height), (0, 0, 0))
    for index, panel in enumerate(panels):
        sheet.paste(panel, ((index % columns) * width, header + (index // columns) * height))
    _legend(ImageDraw.Draw(sheet), labels.array)
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG", optimize=True)
    data = buffer.getvalue()
    return write_atomically(Path(path), lambda p: Path(p).write_bytes(data))


def _panel(ct_slice: np.ndarray, label_slice: np.ndarray, grid: Grid, k: int) -> Image.Image:
    rows, columns = ct_slice.shape
    # Square pixels: scale each axis by its spacing so a circle stays a circle.
    extent = np.array([rows * grid.spacing[1], columns * grid.spacing[0]])
    size = np.maximum(1, np.round(extent / extent.max() * PANEL_PX)).astype(int)
    gray = _windowed(ct_slice)
    image = Image.fromarray(gray).resize((int(size[1]), int(size[0])), Image.Resampling.BILINEAR)
    rgb = np.stack([np.asarray(image)] * 3, axis=-1)
    for mask, color in (
        (label_slice > 0, LIVER_COLOR),
        (label_slice == TUMOR.label, TUMOR_COLOR),
    ):
        if mask.any():
            shown = Image.fromarray(mask.view(np.uint8) * np.uint8(255))
            shown = np.asarray(shown.resize((int(size[1]), int(size[0])), Image.Resampling.NEAREST))
            inside = shown > 0
            rgb[inside & ~ndimage.binary_erosion(inside, border_value=0)] = color
    panel = Image.fromarray(rgb)
    draw = ImageDraw.Draw(panel)
    font = _font(13)
    centre = grid.index_to_physical(((columns - 1) / 2, (rows - 1) / 2, k))
    axis = int(np.argmax(np.abs(grid.slice_normal)))
    position = f"{'LPS'[axis]} {centre[axis]:+.1f} mm"
    draw.text((4, 2), f"slice {k + 1}/{grid.shape[0]}  {position}", fill=TEXT_COLOR, font=font)
    left, top = _edge_letters(grid)
    draw.text((3, panel.height // 2 - 7), left, fill=TEXT_COLOR, font=font)
    draw.text((panel.width // 2 - 4, 17), top, fill=TEXT_COLOR, font=font)
    return panel


def _windowed(values: np.ndarray) -> np.ndarray:
    """HU to grey (uint8) in the soft-tissue window; computed per slice in float32."""
    low = WINDOW_LEVEL - WINDOW_WIDTH / 2
    scaled = (values.astype(np.float32) - np.float32(low)) * np.float32(255.0 / WINDOW_WIDTH)
    return np.clip(scaled, 0, 255).astype(np.uint8)


def _edge_letters(grid: Grid) -> tuple[str, str]:
    """Patient directions at the image's left edge (towards -i) and top edge (towards -j)."""

    def letters(vector: np.ndarray) -> str:
        order = np.argsort(-np.abs(vector))
        strong = [a for a in order if abs(vector[a]) > 0.3] or [order[0]]
        return "".join(_LPS_LETTERS[a][int(vector[a] > 0)] for a in strong[:2])

    return letters(-grid.direction[:, 0]), letters(-grid.direction[:, 1])


def _legend(draw: ImageDraw.ImageDraw, labels: np.ndarray) -> None:
    font = _font(14)
    x = 6
    for name, color in ((LIVER.name, LIVER_COLOR), ("Tumor", TUMOR_COLOR)):
        draw.rectangle((x, 7, x + 12, 17), outline=color, width=2)
        draw.text((x + 18, 4), name, fill=color, font=font)
        x += 18 + int(draw.textlength(name, font=font)) + 16
    if not (labels > 0).any():
        draw.text((x, 4), "no liver found", fill=TEXT_COLOR, font=font)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled font (scalable where FreeType is built in, a bitmap font otherwise)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):
        return ImageFont.load_default()
