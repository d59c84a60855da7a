"""Score predictions against truth, case by case: voxel and surface metrics per structure,
lesion detection, and one overlay slice per case, gathered into an :class:`Evaluation`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepliver.evaluation import lesions, metrics
from deepliver.evaluation.cases import LabelSource, pair_paths
from deepliver.evaluation.report import snapshot
from deepliver.evaluation.results import STRUCTURES, Evaluation
from deepliver.progress import Progress
from deepliver.volume import GridMismatchError, Volume

PREDICTION = "prediction"  # the model name of `deepliver evaluate`, which runs no model


def conventions(tolerance_mm: float) -> str:
    """The rules a reader of a report needs, in one place (written into summary.md)."""
    return "\n".join(
        [
            f"- Implementation: {metrics.IMPLEMENTATION}",
            "- Structures: liver = labels 1 and 2 (the organ with its tumors, as LiTS scores "
            "it); tumor = label 2.",
            "- Distances (Hausdorff, HD95, ASSD, surface Dice) are in millimetres from the "
            f"image spacing; HD95 is the larger of the two directed 95th percentiles; ASSD the "
            "mean of both directions' distances pooled; surface Dice (tolerance "
            f"{tolerance_mm:g} mm) the share of both surfaces within the tolerance.",
            "- Empty masks: truth and prediction both empty -> Dice 1, distances 0. Exactly "
            "one empty -> Dice 0 and distances missing: such a case is counted as a failure, "
            "never given a distance of 0.",
            "- Lesions: 26-connected components of the tumor label. LiTS rule: lesions that "
            "overlap are merged into groups; a group is detected when its IoU > 0.5 (its true "
            "lesions count as TP; predicted lesions outside detected groups as FP). Overlap "
            "rule: a true lesion touched by any predicted voxel is detected; a predicted lesion "
            "touching none is FP. Precision TP/(TP+FP), recall TP/(TP+FN). Size classes by "
            "the longest axial diameter of the lesion (< 10, 10-20, > 20 mm).",
        ]
    )


def score_case(
    model: str,
    case: str,
    prediction: Volume,
    truth: Volume,
    ct: Volume | None = None,
    tolerance_mm: float = 2.0,
) -> tuple[list[dict], list[dict], object]:
    """Rows, lesion rows and the overlay snapshot of one case (labels on the same grid)."""
    # Axial slices first, whatever the files' storage: lesion sizes are axial diameters.
    prediction, truth = prediction.patient_ordered(), truth.patient_ordered()
    ct = None if ct is None else ct.patient_ordered()
    spacing = truth.grid.spacing[::-1]
    rows = []
    for structure, values in STRUCTURES.items():
        scored = metrics.structure_metrics(
            np.isin(prediction.array, values), np.isin(truth.array, values), spacing, tolerance_mm
        )
        rows.append({"model": model, "case": case, "structure": structure, **scored})
    lesion_rows = [
        {
            "model": model,
            "case": case,
            "rule": counts.rule,
            "size_class": counts.size_class,
            "tp": counts.tp,
            "fp": counts.fp,
            "fn": counts.fn,
        }
        for counts in lesions.lesion_detection(prediction.array == 2, truth.array == 2, spacing)
    ]
    picture = snapshot(
        model,
        case,
        truth.array,
        prediction.array,
        None if ct is None else ct.array,
        spacing,
    )
    return rows, lesion_rows, picture


def on_truth_grid(prediction: Volume, truth: Volume, where: str, resample: bool):
    """The prediction on the truth's grid, and a note when anything was done to get there.

    Same grid: as is. A prediction on part of the truth's voxel lattice (a DICOM SEG keeps only
    the slices it has frames for): pasted back, exactly. Anything else is refused, unless the
    user asked for nearest-neighbour resampling, which the report then says.
    """
    if prediction.grid.same_as(truth.grid):
        return prediction, None
    try:
        return prediction.paste_into(truth.grid, fill=0), None
    except (GridMismatchError, ValueError):
        pass
    if not resample:
        raise GridMismatchError(
            f"{where}: prediction and truth lie on different grids "
            f"({prediction.grid.describe_difference(truth.grid)}); add --resample to resample "
            "the prediction onto the truth grid (nearest neighbour)"
        )
    note = f"{where}: prediction resampled onto the truth grid (nearest neighbour)"
    return prediction.resampled_onto(truth.grid, label=True, fill=0), note


def evaluate_paths(
    prediction_path: Path,
    truth_path: Path,
    *,
    tolerance_mm: float = 2.0,
    resample: bool = False,
    progress: Progress | None = None,
) -> Evaluation:
    """`deepliver evaluate`: every paired case scored; unpaired ones listed."""
    report = progress or (lambda stage, fraction: None)
    pairing = pair_paths(prediction_path, truth_path)
    evaluation = Evaluation(
        models=[{"model": PREDICTION, "seconds_per_case": None, "size_mb": None}],
        unmatched={"prediction only": pairing.prediction_only, "truth only": pairing.truth_only},
        tolerance_mm=tolerance_mm,
    )
    if not pairing.pairs:
        from deepliver.errors import DeepLiverError

        raise DeepLiverError(
            f"no case of {prediction_path} pairs with one of {truth_path} (by file name or "
            f"Series Instance UID); prediction cases: {_few(pairing.prediction_only)}; "
            f"truth cases: {_few(pairing.truth_only)}"
        )
    for number, (predicted, true) in enumerate(pairing.pairs):
        report(f"case {true.name}", number / len(pairing.pairs))
        _score_pair(evaluation, predicted, true, resample)
    report("done", 1.0)
    return evaluation


def _score_pair(evaluation: Evaluation, predicted: LabelSource, true: LabelSource, resample):
    truth = true.read()
    where = f"case {true.name} ({predicted.where} vs {true.where})"
    prediction, note = on_truth_grid(predicted.read(), truth, where, resample)
    if note:
        evaluation.notes.append(note)
    ct = _read_ct(true.ct_path or predicted.ct_path, truth)
    rows, lesion_rows, picture = score_case(
        PREDICTION, true.name, prediction, truth, ct, evaluation.tolerance_mm
    )
    evaluation.rows += rows
    evaluation.lesion_rows += lesion_rows
    evaluation.snapshots.append(picture)


def _read_ct(path: Path | None, truth: Volume) -> Volume | None:
    """The case's CT for the overlays, when one lies beside the labels on the same grid."""
    if path is None:
        return None
    from deepliver.io.image_files import read_image

    ct = read_image(path)
    return ct if ct.grid.same_as(truth.grid) else None


def _few(names: list[str], limit: int = 5) -> str:
    if not names:
        return "none"
    return ", ".join(names[:limit]) + (
        f" and {len(names) - limit} more" if len(names) > limit else ""
    )
