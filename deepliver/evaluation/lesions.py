"""Lesion-level detection: which tumors were found, which were missed, which were invented.

A lesion is one 26-connected component (``LESION_CONNECTIVITY``) of a tumor mask, in the
truth and in the prediction alike. Two matching rules are reported:

- "lits" (the LiTS challenge rule): truth and predicted lesions are the nodes of a graph with
  an edge wherever a truth and a predicted lesion overlap. Each connected group of that graph
  is merged (the union of its truth lesions against the union of its predicted lesions) and is
  a detection when the merged IoU is > 0.5. tp = truth lesions in detected groups, fn = the
  other truth lesions, fp = predicted lesions not in a detected group.
- "overlap" (lenient): a truth lesion is detected (tp) when any predicted voxel overlaps it,
  else it is missed (fn); fp = predicted lesions that overlap no truth lesion.

Counts are given for all lesions and per size class of the longest axial diameter (the longest
in-plane extent in any one slice, lower bound inclusive): a truth lesion (tp or fn) is classed
by its own diameter, a false positive by the predicted lesion's own diameter.
precision = tp / (tp + fp), recall = tp / (tp + fn), f1 = 2tp / (2tp + fp + fn), each None when
its denominator is 0 (no lesion at all).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse.csgraph import connected_components

from deepliver.annotation.segmentation import LESION_CONNECTIVITY
from deepliver.inference.lesions import longest_axial_diameter
from deepliver.inference.postprocess import spacing_zyx as as_spacing_zyx
from deepliver.volume import Box

SIZE_CLASSES = (("<10 mm", 0.0, 10.0), ("10-20 mm", 10.0, 20.0), (">20 mm", 20.0, math.inf))
RULES = ("lits", "overlap")
ALL = "all"


@dataclass(frozen=True)
class LesionCounts:
    """Detection counts of one rule for one size class ("all" or a SIZE_CLASSES name)."""

    rule: str
    size_class: str
    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float | None:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float | None:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float | None:
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


@dataclass(frozen=True)
class _Matching:
    """Outcome per lesion: truth lesions detected, predicted lesions that are false positives."""

    truth_detected: np.ndarray  # bool, one per truth lesion
    prediction_false: np.ndarray  # bool, one per predicted lesion


def size_class(diameter_mm: float) -> str:
    """The SIZE_CLASSES name of a longest axial diameter."""
    for name, low, high in SIZE_CLASSES:
        if low <= diameter_mm < high:
            return name
    raise ValueError(f"no size class for a diameter of {diameter_mm} mm")


def lesion_detection(prediction: np.ndarray, truth: np.ndarray, spacing_zyx) -> list[LesionCounts]:
    """Counts per rule (RULES order), each "all" then every size class (SIZE_CLASSES order).
    The masks are in patient order (axial slices first: :meth:`Volume.patient_ordered`)."""
    prediction = np.asarray(prediction) != 0
    truth = np.asarray(truth) != 0
    if prediction.shape != truth.shape:
        raise ValueError(
            f"prediction shape {prediction.shape} differs from truth shape {truth.shape}"
        )
    spacing_xyz = as_spacing_zyx(spacing_zyx)[::-1]
    box = Box.around(prediction | truth)
    if box is None:
        return _table({rule: ([], [], []) for rule in RULES})
    truth_labels, n_truth = ndimage.label(truth[box.slices], structure=LESION_CONNECTIVITY)
    prediction_labels, n_prediction = ndimage.label(
        prediction[box.slices], structure=LESION_CONNECTIVITY
    )
    truth_sizes = np.bincount(truth_labels.ravel(), minlength=n_truth + 1)[1:]
    prediction_sizes = np.bincount(prediction_labels.ravel(), minlength=n_prediction + 1)[1:]
    pairs, overlaps = _overlaps(truth_labels, prediction_labels, n_prediction)
    matchings = {
        "lits": _lits(pairs, overlaps, truth_sizes, prediction_sizes),
        "overlap": _any_overlap(pairs, n_truth, n_prediction),
    }
    truth_classes = _size_classes(truth_labels, spacing_xyz, np.ones(n_truth, dtype=bool))
    false = np.logical_or.reduce([m.prediction_false for m in matchings.values()])
    prediction_classes = _size_classes(prediction_labels, spacing_xyz, false)
    return _table(
        {
            rule: _classed(matching, truth_classes, prediction_classes)
            for rule, matching in matchings.items()
        }
    )


def _overlaps(
    truth_labels: np.ndarray, prediction_labels: np.ndarray, n_prediction: int
) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping (truth, prediction) lesion pairs (0-based, shape (n, 2)) and their voxels.

    Only voxels inside both masks are paired, and np.unique keeps the table as sparse as the
    overlaps (a dense truth x prediction bincount grows with the product of the lesion counts).
    """
    both = (truth_labels > 0) & (prediction_labels > 0)
    keys = truth_labels[both].astype(np.int64) * (n_prediction + 1) + prediction_labels[both]
    keys, overlaps = np.unique(keys, return_counts=True)
    pairs = np.column_stack([keys // (n_prediction + 1), keys % (n_prediction + 1)]) - 1
    return pairs, overlaps


def _lits(
    pairs: np.ndarray, overlaps: np.ndarray, truth_sizes: np.ndarray, prediction_sizes: np.ndarray
) -> _Matching:
    """The LiTS rule: merge each connected group of the overlap graph, detect on IoU > 0.5."""
    n_truth, n_prediction = len(truth_sizes), len(prediction_sizes)
    n_nodes = n_truth + n_prediction  # truth lesions first, then predicted lesions
    graph = sparse.coo_matrix(
        (np.ones(len(pairs)), (pairs[:, 0], n_truth + pairs[:, 1])), shape=(n_nodes, n_nodes)
    )
    n_groups, group = connected_components(graph, directed=False)
    truth_group, prediction_group = group[:n_truth], group[n_truth:]
    # Lesions of one kind are disjoint, so a group's merged overlap is the sum of its pairs'.
    intersection = np.bincount(truth_group[pairs[:, 0]], weights=overlaps, minlength=n_groups)
    sizes = np.bincount(truth_group, weights=truth_sizes, minlength=n_groups) + np.bincount(
        prediction_group, weights=prediction_sizes, minlength=n_groups
    )
    union = sizes - intersection
    detected = 2 * intersection > union  # IoU > 0.5, in exact integer voxel counts
    return _Matching(detected[truth_group], ~detected[prediction_group])


def _any_overlap(pairs: np.ndarray, n_truth: int, n_prediction: int) -> _Matching:
    """The lenient rule: any overlap detects a truth lesion and clears a predicted one."""
    truth_detected = np.zeros(n_truth, dtype=bool)
    truth_detected[pairs[:, 0]] = True
    prediction_matched = np.zeros(n_prediction, dtype=bool)
    prediction_matched[pairs[:, 1]] = True
    return _Matching(truth_detected, ~prediction_matched)


def _size_classes(labels: np.ndarray, spacing_xyz, wanted: np.ndarray) -> list[str | None]:
    """Size class per lesion, measured on its own bounding box; None where not wanted."""
    classes: list[str | None] = []
    for number, where in enumerate(ndimage.find_objects(labels), start=1):
        if wanted[number - 1]:
            diameter = longest_axial_diameter(labels[where] == number, spacing_xyz)
            classes.append(size_class(diameter))
        else:
            classes.append(None)
    return classes


def _classed(
    matching: _Matching, truth_classes: list, prediction_classes: list
) -> tuple[list, list, list]:
    """Size classes of the tp, fp and fn lesions of one rule."""
    tp = [c for c, hit in zip(truth_classes, matching.truth_detected, strict=True) if hit]
    fn = [c for c, hit in zip(truth_classes, matching.truth_detected, strict=True) if not hit]
    fp = [c for c, bad in zip(prediction_classes, matching.prediction_false, strict=True) if bad]
    return tp, fp, fn


def _table(classed: dict[str, tuple[list, list, list]]) -> list[LesionCounts]:
    rows = []
    for rule in RULES:
        tp, fp, fn = classed[rule]
        rows.append(LesionCounts(rule, ALL, len(tp), len(fp), len(fn)))
        for name, _, _ in SIZE_CLASSES:
            rows.append(LesionCounts(rule, name, tp.count(name), fp.count(name), fn.count(name)))
    return rows
