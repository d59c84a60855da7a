"""`deepliver compare`: run several models on the same cases and score them side by side.

Cases come from :mod:`deepliver.datasets` (held-out phantoms, seeds 0..N-1, which no training
run uses, or a dataset folder). A model is a cascade family (the bundled ``liver-<name>`` and
``tumor-<name>`` models) or a detector (``fasterrcnn``, ``yolo``), scored on its boxes and on
the mask they imply.
"""

from __future__ import annotations

import time

import numpy as np

from deepliver.datasets import Case
from deepliver.errors import DeepLiverError
from deepliver.evaluation.boxes import BOX_MASK_SUFFIX, box_mask, box_rows
from deepliver.evaluation.evaluate import score_case
from deepliver.evaluation.results import Evaluation
from deepliver.progress import Progress


def model_size_mb(family: str) -> float:
    """Weights on disk of the family's models (a detector: its own), in MB."""
    from deepliver.models.card import find_model

    total = 0
    for stage in ("liver", "liver-fine", "tumor"):
        try:
            folder = find_model(f"{stage}-{family}")
        except DeepLiverError:
            continue
        total += sum(p.stat().st_size for p in folder.glob("*.pt"))
    return total / 1e6


def compare(
    models: list[str],
    cases: list[Case],
    *,
    device: str = "auto",
    tolerance_mm: float = 2.0,
    progress: Progress | None = None,
) -> Evaluation:
    """Every model on every case: one CT read or made once, then each model scored on it.

    A model is a segmentation family (``unet2d``: the cascade) or a detector (``fasterrcnn``,
    ``yolo``: the bundled ``tumor-<name>``, run in the liver of the first family named, or of
    ``unet2d``); a detector is scored on its boxes and on the mask they imply.
    """
    from deepliver.inference.cascade import load_cascade, resolve_device, segment
    from deepliver.models.card import DETECTION_ARCHITECTURES, find_model, load_model

    report = progress or (lambda stage, fraction: None)
    device = resolve_device(device)
    families = [m for m in models if m not in DETECTION_ARCHITECTURES]
    detectors = {
        name: load_model(find_model(f"tumor-{name}"), device)
        for name in models
        if name in DETECTION_ARCHITECTURES
    }
    liver_family = families[0] if families else "unet2d"
    loaded = {
        family: load_cascade(family, device) for family in dict.fromkeys([*families, liver_family])
    }
    seconds = {name: 0.0 for name in models}
    evaluation = Evaluation(tolerance_mm=tolerance_mm)
    for number, case in enumerate(cases):
        report(f"case {case.name}", number / len(cases))
        ct, truth = case.load()
        results = {}
        for family, cascade in loaded.items():
            start = time.perf_counter()
            results[family] = segment(ct, cascade)
            if family in seconds:
                seconds[family] += time.perf_counter() - start
                _score(evaluation, family, case.name, results[family].labels, truth, ct)
        for name, (network, card) in detectors.items():
            seconds[name] += _score_detector(
                evaluation,
                name,
                case.name,
                (network, card),
                results[liver_family],
                truth,
                ct,
                device,
            )
    evaluation.models = [
        {
            "model": name + (BOX_MASK_SUFFIX if name in detectors else ""),
            "seconds_per_case": seconds[name] / len(cases),
            "size_mb": model_size_mb(name),
        }
        for name in models
    ]
    report("done", 1.0)
    return evaluation


def _score(evaluation: Evaluation, model: str, case: str, labels, truth, ct) -> None:
    rows, lesion_rows, picture = score_case(model, case, labels, truth, ct, evaluation.tolerance_mm)
    evaluation.rows += rows
    evaluation.lesion_rows += lesion_rows
    evaluation.snapshots.append(picture)


def _score_detector(evaluation, name, case, model, cascade, truth, ct, device) -> float:
    """Detect where the cascade looked for tumors; score the boxes, then the mask they imply
    with the cascade's liver. Returns the detector's seconds (the liver's time is the
    cascade's)."""
    from deepliver.detection.detect import detect_lesions

    network, card = model
    start = time.perf_counter()
    detections = detect_lesions(ct, cascade.tumor_search, network, card, device)
    seconds = time.perf_counter() - start
    evaluation.box_rows += box_rows(name, case, detections, truth, ct)
    labels = (cascade.labels.array > 0).astype(np.uint8)
    labels[box_mask(detections, ct.grid, cascade.tumor_search)] = 2
    _score(evaluation, name + BOX_MASK_SUFFIX, case, ct.with_array(labels), truth, ct)
    return seconds
