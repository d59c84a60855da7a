"""What an evaluation produces, before it is written: plain rows a CSV or a plot reads.

Rows are dicts so a new metric is one new key, not a new class. Missing values (a distance when
one mask is empty) are None, never 0: the report counts them as failures.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Structures scored, and the labels each one covers: the liver is scored with its tumors
# (labels 1 and 2), as LiTS scores it; tumors are label 2.
STRUCTURES: dict[str, tuple[int, ...]] = {"liver": (1, 2), "tumor": (2,)}


@dataclass(frozen=True)
class CaseSnapshot:
    """One axial slice of a case for the worst-case overlays: small, so every case keeps one."""

    model: str
    case: str
    slice_index: int
    truth: np.ndarray  # uint8 (y, x) labels 0/1/2
    prediction: np.ndarray  # uint8 (y, x) labels 0/1/2
    ct: np.ndarray | None = None  # HU (y, x), when the CT is known
    spacing_yx: tuple[float, float] = (1.0, 1.0)


@dataclass
class Evaluation:
    """Everything a report shows.

    rows: one per model x case x structure: {"model", "case", "structure", **metrics} with the
        keys of :func:`deepliver.evaluation.metrics.structure_metrics`.
    lesion_rows: one per model x case x rule x size class: {"model", "case", "rule",
        "size_class", "tp", "fp", "fn"} (see :mod:`deepliver.evaluation.lesions`).
    box_rows: detectors only, one per model x case x level: {"model", "case", "level"
        ("slice" | "lesion"), "tp", "fp", "fn"} (see :mod:`deepliver.evaluation.boxes`).
    models: one per model: {"model", "seconds_per_case" (or None), "size_mb" (or None)}.
    unmatched: {"prediction only": [names], "truth only": [names]}: listed, never dropped.
    notes: sentences the report must show (resampling done, detectors left out, ...).
    """

    rows: list[dict] = field(default_factory=list)
    lesion_rows: list[dict] = field(default_factory=list)
    box_rows: list[dict] = field(default_factory=list)
    snapshots: list[CaseSnapshot] = field(default_factory=list)
    models: list[dict] = field(default_factory=list)
    unmatched: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    tolerance_mm: float = 2.0
