"""`deepliver compare`: run several models on the same cases and score them side by side.

Cases come from :mod:`deepliver.datasets` (held-out phantoms, seeds 0..N-1, which no training
run uses, or a dataset folder). A model is a cascade family: the bundled ``liver-<name>`` and
``tumor-<name>`` models.
"""

from __future__ import annotations

import time

from deepliver.datasets import Case
from deepliver.errors import DeepLiverError
from deepliver.evaluation.evaluate import score_case
from deepliver.evaluation.results import Evaluation
from deepliver.progress import Progress


def model_size_mb(family: str) -> float:
    """Weights on disk of the family's models, in MB."""
    from deepliver.models.card import find_model

    total = 0
    for stage in ("liver", "tumor"):
        try:
            folder = find_model(f"{stage}-{family}")
        except DeepLiverError:
            continue
        total += sum(p.stat().st_size for p in folder.glob("*.pt"))
    return total / 1e6


def compare(
    families: list[str],
    cases: list[Case],
    *,
    device: str = "auto",
    tolerance_mm: float = 2.0,
    progress: Progress | None = None,
) -> Evaluation:
    """Every model on every case: one CT read or made once, then each model scored on it."""
    from deepliver.inference.cascade import load_cascade, segment

    report = progress or (lambda stage, fraction: None)
    loaded = {family: load_cascade(family, device) for family in families}
    seconds = {family: 0.0 for family in families}
    evaluation = Evaluation(tolerance_mm=tolerance_mm)
    for number, case in enumerate(cases):
        report(f"case {case.name}", number / len(cases))
        ct, truth = case.load()
        for family, models in loaded.items():
            start = time.perf_counter()
            labels = segment(ct, models).labels
            seconds[family] += time.perf_counter() - start
            rows, lesion_rows, picture = score_case(
                family, case.name, labels, truth, ct, tolerance_mm
            )
            evaluation.rows += rows
            evaluation.lesion_rows += lesion_rows
            evaluation.snapshots.append(picture)
    evaluation.models = [
        {
            "model": family,
            "seconds_per_case": seconds[family] / len(cases),
            "size_mb": model_size_mb(family),
        }
        for family in families
    ]
    report("done", 1.0)
    return evaluation
