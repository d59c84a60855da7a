"""Lesions as a table a radiologist reads: size, longest axial diameter, density, position,
and for a model's result its confidence (the tumor model's mean probability over the lesion).

A lesion is one 26-connected component of the tumor label, numbered (largest first) by
:func:`deepliver.annotation.segmentation.lesion_labels` as the segments are, so lesion 3 here
is segment "Tumor 3" in the ``.seg.nrrd`` and the DICOM SEG. Positions are LPS millimetres,
like every DeepLiver coordinate; each lesion is measured inside its own bounding box.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from deepliver.annotation.segmentation import lesion_labels
from deepliver.annotation.structures import LIVER, TUMOR
from deepliver.io.atomic import write_atomically
from deepliver.volume import Grid, Volume, patient_view

LESIONS_CSV = "lesions.csv"
LESIONS_JSON = "lesions.json"
SUMMARY_JSON = "summary.json"

# Brute force over all boundary points below this count; the convex hull first above it.
_HULL_ABOVE = 64


@dataclass(frozen=True)
class Lesion:
    """One connected tumor, measured on its grid."""

    id: int  # 1 = the largest; the number of its "Tumor n" segment
    volume_ml: float
    longest_axial_diameter_mm: float  # longest in-plane extent in any one slice
    mean_hu: float
    centroid_lps: tuple[float, float, float]
    box_min_lps: tuple[float, float, float]  # axis-aligned LPS box around its voxels' corners
    box_max_lps: tuple[float, float, float]
    voxels: int
    # The tumor stage's mean P(tumor) over the lesion's voxels (0.5..1: each voxel passed 0.5);
    # None for a label map that no model made. Lesions the model is sure of score near 1.
    mean_probability: float | None = None


def lesion_table(
    labels: Volume, ct: Volume, tumor_probability: Volume | None = None
) -> list[Lesion]:
    """One :class:`Lesion` per connected component of label 2, in ``lesion_masks`` order;
    with the model's ``tumor_probability`` (uint8, 0..255, on the same grid), its mean each."""
    ct.require_same_grid(labels)
    if tumor_probability is not None:
        tumor_probability.require_same_grid(labels, "tumor probability")
    grid = labels.grid
    numbers, box, _ = lesion_labels(labels.array == TUMOR.label)
    if box is None:
        return []
    voxel_ml = float(np.prod(grid.spacing)) / 1000.0
    axial_spacing = grid.patient_ordered().spacing  # diameters lie in axial planes
    ct_crop = ct.array[box.slices]
    probability = None if tumor_probability is None else tumor_probability.array[box.slices]
    lesions = []
    for number, where in enumerate(ndimage.find_objects(numbers), start=1):
        mask = numbers[where] == number
        start = np.array([box.start[a] + where[a].start for a in range(3)])  # (z, y, x)
        kji = np.argwhere(mask) + start  # (n, 3) voxel indices (k, j, i)
        ijk = kji[:, ::-1].astype(np.float64)
        low, high = _corner_box(grid, ijk)
        lesions.append(
            Lesion(
                id=number,
                volume_ml=len(kji) * voxel_ml,
                longest_axial_diameter_mm=longest_axial_diameter(
                    patient_view(mask, grid), axial_spacing
                ),
                mean_hu=float(ct_crop[where][mask].mean(dtype=np.float64)),
                centroid_lps=_triple(grid.index_to_physical(ijk.mean(axis=0))),
                box_min_lps=_triple(low),
                box_max_lps=_triple(high),
                voxels=len(kji),
                mean_probability=None
                if probability is None
                else float(probability[where][mask].mean(dtype=np.float64)) / 255.0,
            )
        )
    return lesions


def _corner_box(grid: Grid, ijk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact axis-aligned LPS box of the voxels' corners (tighter than the index box's corners
    on an oblique grid): a corner is the centre plus half a step along each grid axis."""
    axes = grid.direction * grid.spacing  # columns: LPS step per i, j, k
    centres = ijk @ axes.T
    half = 0.5 * np.abs(axes).sum(axis=1)
    return centres.min(axis=0) - half + grid.origin, centres.max(axis=0) + half + grid.origin


def longest_axial_diameter(mask: np.ndarray, spacing_xyz) -> float:
    """Longest distance (mm) between two boundary points of the mask within one axial slice
    (a (z, y, x) mask in patient order: :func:`deepliver.volume.patient_view`).

    Boundary points are the midpoints of voxel edges between the lesion and the outside, where
    a contour (marching squares) would cross, so a disc of diameter d measures d to within a
    fraction of a voxel. Distances use the in-plane spacing (columns, rows); the direction
    cosines are orthonormal, so an oblique grid measures the same. The farthest pair lies on
    the convex hull of each slice's points.
    """
    mask = np.asarray(mask, dtype=bool)
    sx, sy = float(spacing_xyz[0]), float(spacing_xyz[1])
    longest = 0.0
    for plane in mask:
        if plane.any():
            points = _edge_points(plane) * (sy, sx)
            longest = max(longest, _farthest_pair(points))
    return longest


def _edge_points(plane: np.ndarray) -> np.ndarray:
    """(row, column) of the midpoints of edges between an in-mask pixel and an outside one."""
    padded = np.pad(plane, 1)
    inner = padded[1:-1, 1:-1]
    points = []
    for dj, di in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        neighbour = padded[1 + dj : padded.shape[0] - 1 + dj, 1 + di : padded.shape[1] - 1 + di]
        rows, cols = np.nonzero(inner & ~neighbour)
        points.append(np.column_stack([rows + 0.5 * dj, cols + 0.5 * di]))
    return np.concatenate(points)


def _farthest_pair(points: np.ndarray) -> float:
    if len(points) > _HULL_ABOVE:
        try:
            points = points[ConvexHull(points).vertices]
        except QhullError:  # degenerate: the extremes along 360 directions are hull points
            angles = np.deg2rad(np.arange(0.0, 180.0, 0.5))
            along = points @ np.stack([np.cos(angles), np.sin(angles)])
            points = points[np.unique(np.r_[along.argmin(axis=0), along.argmax(axis=0)])]
    differences = points[:, None, :] - points[None, :, :]
    return float(np.sqrt((differences**2).sum(axis=-1).max()))


def _triple(values) -> tuple[float, float, float]:
    return tuple(float(v) for v in np.ravel(values))


# --- files ---------------------------------------------------------------------------------

CSV_COLUMNS = (
    "id",
    "volume_ml",
    "longest_axial_diameter_mm",
    "mean_hu",
    "centroid_l_mm",
    "centroid_p_mm",
    "centroid_s_mm",
    "box_min_l_mm",
    "box_min_p_mm",
    "box_min_s_mm",
    "box_max_l_mm",
    "box_max_p_mm",
    "box_max_s_mm",
    "voxels",
    "mean_probability",
)


def _rounded(lesion: Lesion) -> dict:
    """The lesion as JSON-ready values, rounded to what a measurement on CT can claim."""
    return {
        "id": lesion.id,
        "volume_ml": round(lesion.volume_ml, 4),
        "longest_axial_diameter_mm": round(lesion.longest_axial_diameter_mm, 2),
        "mean_hu": round(lesion.mean_hu, 1),
        "centroid_lps": [round(v, 2) for v in lesion.centroid_lps],
        "box_min_lps": [round(v, 2) for v in lesion.box_min_lps],
        "box_max_lps": [round(v, 2) for v in lesion.box_max_lps],
        "voxels": lesion.voxels,
        "mean_probability": None
        if lesion.mean_probability is None
        else round(lesion.mean_probability, 3),
    }


def write_lesion_table(lesions: list[Lesion], folder: Path) -> tuple[Path, Path]:
    """``lesions.csv`` (one row per lesion, flat columns) and ``lesions.json``, atomically."""
    folder = Path(folder)
    rows = [_rounded(lesion) for lesion in lesions]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow(
            [row["id"], row["volume_ml"], row["longest_axial_diameter_mm"], row["mean_hu"]]
            + row["centroid_lps"]
            + row["box_min_lps"]
            + row["box_max_lps"]
            + [row["voxels"], "" if row["mean_probability"] is None else row["mean_probability"]]
        )
    document = {
        "coordinate_system": "LPS",
        "units": {
            "volume": "mL",
            "length": "mm",
            "density": "HU",
            "mean_probability": "the tumor model's P(tumor), 0..1, averaged over the lesion",
        },
        "lesions": rows,
    }
    csv_path = _write_text(folder / LESIONS_CSV, text.getvalue())
    json_path = _write_text(folder / LESIONS_JSON, json.dumps(document, indent=2) + "\n")
    return csv_path, json_path


def read_lesion_json(path: Path) -> list[Lesion]:
    """Lesions back from ``lesions.json`` (rounded as written)."""
    document = json.loads(Path(path).read_text(encoding="utf-8"))
    return [
        Lesion(
            id=int(row["id"]),
            volume_ml=float(row["volume_ml"]),
            longest_axial_diameter_mm=float(row["longest_axial_diameter_mm"]),
            mean_hu=float(row["mean_hu"]),
            centroid_lps=_triple(row["centroid_lps"]),
            box_min_lps=_triple(row["box_min_lps"]),
            box_max_lps=_triple(row["box_max_lps"]),
            voxels=int(row["voxels"]),
            mean_probability=None
            if row.get("mean_probability") is None
            else float(row["mean_probability"]),
        )
        for row in document["lesions"]
    ]


def summary(
    labels: Volume,
    ct: Volume,
    lesions: list[Lesion],
    models: list[dict] | tuple[dict, ...] = (),
    timings: dict[str, float] | None = None,
) -> dict:
    """The numbers a reader wants first: liver volume (tumors included), tumor volume and
    burden, lesion count, which models made the result and how long each stage took."""
    ct.require_same_grid(labels)
    voxel_ml = float(np.prod(labels.spacing)) / 1000.0
    tumor_ml = np.count_nonzero(labels.array == TUMOR.label) * voxel_ml
    liver_ml = np.count_nonzero(labels.array == LIVER.label) * voxel_ml + tumor_ml
    return {
        "liver_volume_ml": round(liver_ml, 2),
        "tumor_volume_ml": round(tumor_ml, 3),
        "tumor_burden_percent": round(100.0 * tumor_ml / liver_ml, 3) if liver_ml else None,
        "lesion_count": len(lesions),
        "largest_lesion_diameter_mm": (
            round(max(lesion.longest_axial_diameter_mm for lesion in lesions), 2)
            if lesions
            else None
        ),
        "models": [_model_entry(model) for model in models],
        "timings_s": {str(k): round(float(v), 3) for k, v in (timings or {}).items()},
        "grid": {
            "shape_zyx": list(labels.grid.shape),
            "spacing_xyz_mm": [round(float(s), 4) for s in labels.spacing],
        },
    }


def _model_entry(model: dict) -> dict:
    if "name" not in model:
        raise ValueError(f"a model entry needs a name, got {sorted(model)}")
    entry = {"name": str(model["name"]), "version": str(model.get("version", ""))}
    for key in ("stage", "architecture"):
        if key in model:
            entry[key] = str(model[key])
    return entry


def write_summary(summary_data: dict, folder: Path) -> Path:
    """``summary.json``, atomically."""
    return _write_text(Path(folder) / SUMMARY_JSON, json.dumps(summary_data, indent=2) + "\n")


def _write_text(path: Path, text: str) -> Path:
    return write_atomically(path, lambda p: Path(p).write_text(text, encoding="utf-8"))
