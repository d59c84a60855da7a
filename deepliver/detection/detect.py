"""3D lesion boxes from a detector: per-slice boxes inside the liver, linked across slices.

The detector sees what it was trained on: the liver's box (plus a margin), blanked beyond the
liver, on its card's grid, windowed, one 2.5D slice at a time in a square canvas. Boxes whose
centre lies outside the liver are dropped; the rest are linked into 3D boxes
(:mod:`deepliver.detection.linking`) and reported in LPS millimetres with a score.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from deepliver.detection.linking import link_slices
from deepliver.detection.training import detect, place, stack
from deepliver.inference.postprocess import liver_box, liver_only
from deepliver.io.atomic import write_atomically
from deepliver.models.card import ModelCard
from deepliver.models.predict import normalise_uint8
from deepliver.training.data import TUMOR_CROP_MARGIN_MM
from deepliver.volume import Volume

BOX_SCORE = 0.1  # per-slice boxes kept for linking
LESION_SCORE = 0.5  # reported from this lesion score when a card has no lesion_score
BATCH = 8
DETECTIONS_CSV = "detections.csv"
DETECTIONS_JSON = "detections.json"


@dataclass(frozen=True)
class DetectedLesion:
    number: int
    score: float
    slices: int  # on the detector's grid
    box_min_lps_mm: tuple[float, float, float]
    box_max_lps_mm: tuple[float, float, float]

    @property
    def size_mm(self) -> tuple[float, float, float]:
        return tuple(
            float(b - a) for a, b in zip(self.box_min_lps_mm, self.box_max_lps_mm, strict=True)
        )


def detect_lesions(
    ct: Volume,
    liver: np.ndarray,
    network,
    card: ModelCard,
    device: str = "cpu",
    lesion_score: float | None = None,
) -> list[DetectedLesion]:
    """Lesion boxes in the liver of ``ct`` (HU), numbered by score, best first; those scoring
    at least ``lesion_score`` (default: the card's operating point)."""
    if lesion_score is None:
        lesion_score = reporting_score(card)
    box = liver_box(liver, ct.grid, TUMOR_CROP_MARGIN_MM)  # the crop the detector trained on
    if box is None:
        return []
    crop = liver_only(ct.crop(box), liver[box.slices])
    seen = crop.resampled_to_spacing(card.spacing_mm)
    image = normalise_uint8(seen.array, card.hu_window)
    inside = Volume(liver[box.slices].astype(np.uint8), crop.grid)
    inside = inside.resampled_onto(seen.grid, label=True, fill=0).array > 0
    per_slice = _boxes_per_slice(network, card, image, inside, device)
    tracks = [t for t in link_slices(per_slice) if t.score >= lesion_score]
    lesions = []
    for number, track in enumerate(tracks, start=1):
        start, stop = track.box_ijk()
        corners = seen.grid.index_to_physical(np.stack([start - 0.5, stop - 0.5]))
        lesions.append(
            DetectedLesion(
                number,
                round(track.score, 4),
                len(track.boxes),
                tuple(float(v) for v in corners.min(axis=0)),
                tuple(float(v) for v in corners.max(axis=0)),
            )
        )
    return lesions


def reporting_score(card: ModelCard) -> float:
    """The 3D lesion score a detector reports from: its card's operating point, if it has one."""
    return LESION_SCORE if card.lesion_score is None else card.lesion_score


def _boxes_per_slice(network, card, image, inside, device) -> dict:
    size = int(card.roi_size[0])
    start = tuple(max(0, (n - size) // 2) for n in image.shape[1:])  # a big crop: its middle
    slices = [k for k in range(image.shape[0]) if inside[k].any()]
    per_slice = {}
    for first in range(0, len(slices), BATCH):
        ks = slices[first : first + BATCH]
        batch = np.stack([place(stack(image, k, card.context_slices), size, start) for k in ks])
        for k, (boxes, scores) in zip(ks, detect(network, card, batch, device), strict=True):
            boxes = boxes + np.array([start[1], start[0], start[1], start[0]], dtype=np.float32)
            keep = (scores >= BOX_SCORE) & _centre_inside(boxes, inside[k])
            if keep.any():
                per_slice[k] = (boxes[keep], scores[keep])
    return per_slice


def _centre_inside(boxes: np.ndarray, mask: np.ndarray) -> np.ndarray:
    if len(boxes) == 0:
        return np.zeros(0, dtype=bool)
    x = np.clip(((boxes[:, 0] + boxes[:, 2]) / 2).astype(int), 0, mask.shape[1] - 1)
    y = np.clip(((boxes[:, 1] + boxes[:, 3]) / 2).astype(int), 0, mask.shape[0] - 1)
    return mask[y, x]


def write_detections(lesions: list[DetectedLesion], folder: Path, detector: dict) -> dict:
    """``detections.csv`` and ``detections.json`` (with the detector's name and version)."""
    rows = [
        {
            "lesion": f"Lesion {lesion.number}",
            "score": lesion.score,
            "slices": lesion.slices,
            **{
                f"min_{a}_mm": round(v, 2)
                for a, v in zip("xyz", lesion.box_min_lps_mm, strict=True)
            },
            **{
                f"max_{a}_mm": round(v, 2)
                for a, v in zip("xyz", lesion.box_max_lps_mm, strict=True)
            },
            **{f"size_{a}_mm": round(v, 2) for a, v in zip("xyz", lesion.size_mm, strict=True)},
        }
        for lesion in lesions
    ]
    text = io.StringIO()
    columns = list(rows[0]) if rows else ["lesion", "score", "slices"]
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    folder = Path(folder)
    csv_path = write_atomically(
        folder / DETECTIONS_CSV, lambda p: p.write_text(text.getvalue(), encoding="utf-8")
    )
    payload = {
        "detector": detector,
        "coordinates": "LPS mm, box corners",
        "lesions": [asdict(lesion) for lesion in lesions],
    }
    json_path = write_atomically(
        folder / DETECTIONS_JSON,
        lambda p: p.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8"),
    )
    return {"detections_csv": csv_path, "detections_json": json_path}


def read_detections(path: Path) -> list[DetectedLesion]:
    """The lesions of a ``detections.json`` written by :func:`write_detections`."""
    from deepliver.errors import DeepLiverError

    try:
        entries = json.loads(Path(path).read_text(encoding="utf-8"))["lesions"]
        return [
            DetectedLesion(
                int(e["number"]),
                float(e["score"]),
                int(e["slices"]),
                tuple(float(v) for v in e["box_min_lps_mm"]),
                tuple(float(v) for v in e["box_max_lps_mm"]),
            )
            for e in entries
        ]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DeepLiverError(f"{path}: not a detections file ({error})") from None
