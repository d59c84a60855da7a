"""A detector's operating point: the 3D lesion score from which lesions are reported.

Raw detector scores are not probabilities (a YOLO-style objectness and a Faster R-CNN class
score mean different things), so one fixed cut-off serves neither. After training, the
detector runs on the validation cases, and the lowest score that keeps the false positives
within ``MAX_FP_PER_SCAN`` (the detection issue's clinical budget) becomes the card's
``lesion_score``: as much recall as that budget allows. Truth is the label map's lesions,
matched to 3D boxes one to one at ``detection.metrics.LESION_IOU``, as the benchmark does.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from deepliver.detection.metrics import match_lesions
from deepliver.errors import DeepLiverError
from deepliver.io.atomic import write_atomically
from deepliver.models.card import CARD_FILE, WEIGHTS_FILE, ModelCard, load_model, write_card
from deepliver.training import data
from deepliver.volume import Volume

MAX_FP_PER_SCAN = 1.0
SMALLEST_COUNTED_MM = 10.0  # recall is over lesions this long (axial) or longer


@dataclass(frozen=True)
class ScoredScan:
    """One validation scan: every 3D box the detector proposes, and the true lesions."""

    boxes: np.ndarray  # (n, 6) LPS mm corners
    scores: np.ndarray  # (n,)
    truth: np.ndarray  # (m, 6) LPS mm corners
    diameters_mm: np.ndarray  # (m,) each lesion's longest axial diameter

    @property
    def counted(self) -> np.ndarray:
        """Which lesions count towards recall: those long enough."""
        return self.diameters_mm >= SMALLEST_COUNTED_MM

    def matched(self, threshold: float) -> tuple[np.ndarray, int]:
        """(which lesions are found (bool per lesion), false positives) by the boxes scoring
        ``threshold`` or more."""
        kept = self.boxes[self.scores >= threshold].reshape(-1, 6)
        return match_lesions(kept, self.truth.reshape(-1, 6))


@dataclass(frozen=True)
class OperatingPoint:
    lesion_score: float
    recall: float  # of counted lesions, on the validation scans
    fp_per_scan: float
    lesions: int
    scans: int

    def as_metrics(self) -> dict:
        return {
            "validation_lesion_recall_10mm": round(self.recall, 4),
            "validation_fp_per_scan": round(self.fp_per_scan, 4),
            "validation_lesions_10mm": self.lesions,
            "validation_scans": self.scans,
        }


def tally(scans: list[ScoredScan], threshold: float) -> tuple[int, int, int]:
    """(counted lesions found, counted lesions, false positives) keeping scores >= threshold."""
    found = counted = false_positives = 0
    for scan in scans:
        matched, wrong = scan.matched(threshold)
        found += int((matched & scan.counted).sum())
        counted += int(scan.counted.sum())
        false_positives += wrong
    return found, counted, false_positives


def choose_operating_point(
    scans: list[ScoredScan], max_fp_per_scan: float = MAX_FP_PER_SCAN
) -> OperatingPoint:
    """The lowest score whose false positives per scan stay within the budget.

    Candidates are the scores themselves; when no score fits the budget (or there is none),
    the point sits above them all: nothing would have been reported on the validation scans.
    """
    if not scans:
        raise ValueError("no validation scans to choose an operating point on")
    scores = np.unique(np.concatenate([s.scores for s in scans] + [np.zeros(0)]))
    above = min(1.0, float(np.nextafter(scores[-1], np.inf))) if len(scores) else 1.0
    for threshold in [*scores.tolist(), above]:  # ascending: the first that fits keeps the most
        found, counted, false_positives = tally(scans, threshold)
        if false_positives <= max_fp_per_scan * len(scans):
            break
    return OperatingPoint(
        lesion_score=threshold,
        recall=found / counted if counted else float("nan"),
        fp_per_scan=false_positives / len(scans),
        lesions=counted,
        scans=len(scans),
    )


def scan_case(ct, labels, liver, network, card, device="cpu") -> ScoredScan:
    """Every box the detector proposes in ``liver`` of one labelled case, and its lesions."""
    from deepliver.detection.detect import detect_lesions

    proposed = detect_lesions(ct, liver, network, card, device, lesion_score=0.0)
    boxes = [[*p.box_min_lps_mm, *p.box_max_lps_mm] for p in proposed]
    return scored_scan(boxes, [p.score for p in proposed], labels, ct)


def scored_scan(boxes: ArrayLike, scores: ArrayLike, labels: Volume, ct: Volume) -> ScoredScan:
    """3D boxes ((n, 6) LPS mm corners) and their scores, against a labelled case's lesions."""
    from deepliver.inference.lesions import lesion_table

    truth = lesion_table(labels, ct)
    return ScoredScan(
        boxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 6),
        scores=np.asarray(scores, dtype=np.float64).reshape(-1),
        truth=np.array([[*t.box_min_lps, *t.box_max_lps] for t in truth]).reshape(-1, 6),
        diameters_mm=np.array([t.longest_axial_diameter_mm for t in truth], dtype=np.float64),
    )


def choose_again(
    folder: Path,
    out: Path,
    validation: int | None = None,
    version: str | None = None,
    device: str = "cpu",
    command: str = "",
) -> ModelCard:
    """A copy of the detector in ``folder`` with its operating point chosen again, in ``out``.

    The point rests on few validation scans when the training run had few, and it depends on
    the liver model that finds the liver first: choosing it again on more phantoms (or after
    a new liver model) needs no retraining. The validation cases come from the card's own
    training data (phantoms: seeds 100, 101, ...); the weights are copied byte for byte and
    ``folder`` is left as it was.
    """
    from deepliver.detection.training import DetectionTask

    folder, out = Path(folder), Path(out)
    if out.exists() and any(out.iterdir()):
        raise DeepLiverError(f"{out} exists and is not empty: choose a new folder")
    network, card = load_model(folder, device)
    if not card.is_detector:
        raise DeepLiverError(
            f"model {card.name!r} ({folder}) is a {card.stage} model: only a detector has an "
            "operating point"
        )
    items = _validation_items(card, folder, validation)
    finished = DetectionTask(card, 8, device).finish(network, items)
    card = card.with_updates(
        version=version or card.version,
        lesion_score=finished["lesion_score"],
        metrics={**card.metrics, **finished["metrics"]},
        training={**card.training, "operating_point_command": command},
    )
    out.mkdir(parents=True, exist_ok=True)
    write_atomically(out / WEIGHTS_FILE, lambda path: shutil.copyfile(folder / WEIGHTS_FILE, path))
    write_card(out, card)
    return card


def _validation_items(card: ModelCard, folder: Path, validation: int | None) -> list:
    """The card's training data's validation cases: phantoms can be more than it trained with;
    a dataset folder's split must stay the training's, or training cases would leak in."""
    training = card.training
    if "data" not in training:
        raise DeepLiverError(f"model card {folder / CARD_FILE} does not say its training data")
    trained_with = int(card.metrics.get("validation_cases", 0))
    source = data.parse_data(training["data"])
    if source.folder is not None and validation not in (None, trained_with):
        raise DeepLiverError(
            f"--validation {validation}: {card.name!r} trained on the dataset {source.folder} "
            f"with {trained_with} validation case(s); another count would split it differently "
            "and put training cases among the validation ones"
        )
    size = training.get("phantom_size")
    size = tuple(size) if isinstance(size, list) else None
    count = validation or trained_with
    if count < 1:
        raise DeepLiverError(f"model card {folder / CARD_FILE}: give --validation N (N >= 1)")
    return source.items(count, int(training.get("seed", 0)), size, "detection")[1]
