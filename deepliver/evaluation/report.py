"""Write an evaluation where people and scripts read it: CSV tables, a Markdown summary, plots.

A missing value (None, or NaN) stays missing everywhere: an empty CSV cell, "–" in Markdown, left
out of a mean. Cases where exactly one mask is empty are failures; every table counts them next
to its means, so a mean over the cases that have a distance never hides them.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from deepliver.errors import DeepLiverError
from deepliver.evaluation.results import STRUCTURES, CaseSnapshot, Evaluation
from deepliver.io.atomic import write_atomically

MISSING = "–"
KEYS = ("model", "case", "structure")
COUNTS = ("tp", "fp", "fn", "tn")
# Summarised metrics, in the order tables list them: (key, label, decimals in Markdown).
METRICS: tuple[tuple[str, str, int], ...] = (
    ("dice", "Dice", 4),
    ("jaccard", "Jaccard", 4),
    ("precision", "Precision", 4),
    ("recall", "Recall", 4),
    ("specificity", "Specificity", 4),
    ("accuracy", "Accuracy", 4),
    ("hd_mm", "Hausdorff (mm)", 2),
    ("hd95_mm", "HD95 (mm)", 2),
    ("assd_mm", "ASSD (mm)", 2),
    ("surface_dice", "Surface Dice", 4),
    ("volume_truth_ml", "Volume truth (ml)", 2),
    ("volume_prediction_ml", "Volume prediction (ml)", 2),
    ("volume_difference_ml", "Volume difference (ml)", 2),
)
METRIC_COLUMNS = (*COUNTS, *(key for key, _, _ in METRICS), "empty")
LESION_COLUMNS = ("model", "case", "rule", "size_class", "tp", "fp", "fn")
BOX_COLUMNS = ("model", "case", "level", "tp", "fp", "fn")
RULES = ("lits", "overlap")
SIZE_CLASSES = ("all", "<10 mm", "10-20 mm", ">20 mm")
# The seed table: the original project's tumor columns (per-case means), then the additions.
SEED_TUMOR = (
    ("dice", 4),
    ("jaccard", 4),
    ("hd_mm", 2),
    ("precision", 4),
    ("recall", 4),
    ("accuracy", 4),
    ("specificity", 4),
)
SEED_HEADER = [
    "Model",
    "Dice",
    "Jaccard",
    "Hausdorff (mm)",
    "Precision",
    "Recall",
    "Accuracy",
    "Specificity",
    "Liver Dice",
    "Tumor HD95 (mm)",
    "Lesion F1 (LiTS)",
    "Global tumor Dice",
    "Time per case (s)",
    "Size (MB)",
    "Tumor failures",
]
FAILURES = ("prediction", "truth")  # the "empty" values where exactly one mask is empty


def write_report(evaluation: Evaluation, folder: Path, conventions: str = "") -> dict[str, Path]:
    """Write metrics.csv, lesions.csv, the plots and summary.md into ``folder``, each atomically.

    Returns {name: path}, the name being the file's stem ("metrics", "summary", "dice_boxplot").
    The summary is written last, so the files it links to exist when it does.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = {
        "metrics": _write_csv(
            folder / "metrics.csv",
            _columns(evaluation.rows, KEYS + METRIC_COLUMNS),
            evaluation.rows,
        ),
        "lesions": _write_csv(
            folder / "lesions.csv",
            _columns(evaluation.lesion_rows, LESION_COLUMNS),
            evaluation.lesion_rows,
        ),
    }
    if evaluation.box_rows:
        written["boxes"] = _write_csv(folder / "boxes.csv", list(BOX_COLUMNS), evaluation.box_rows)
    from deepliver.evaluation import plots  # here: plots reads rows with this module's helpers

    written.update(plots.write_plots(evaluation, folder))
    text = summary_markdown(evaluation, conventions)
    written["summary"] = write_atomically(
        folder / "summary.md", lambda p: Path(p).write_text(text, encoding="utf-8")
    )
    return written


def summary_markdown(evaluation: Evaluation, conventions: str = "") -> str:
    """The whole summary.md: headline comparison, per-structure statistics, lesions, figures."""
    sections = [
        _header(evaluation),
        _notes(evaluation.notes),
        _unmatched(evaluation.unmatched),
        "## Comparison\n\n"
        "Tumor columns are per-case means over the cases where the metric exists; cases where "
        "exactly one mask is empty have no distance: the last column counts them (failures / "
        "cases).\n\n" + seed_table(evaluation),
        _structure_sections(evaluation),
        _global_dice(evaluation),
        _lesion_section(evaluation),
        _box_section(evaluation),
        _figures(),
        "## Conventions\n\n" + (conventions.strip() or "(none given)"),
    ]
    return "\n\n".join(section.rstrip() for section in sections) + "\n"


def seed_table(evaluation: Evaluation) -> str:
    """One Markdown row per model with the original project's comparison columns (tumor means),
    then liver Dice, tumor HD95, lesion F1, pooled tumor Dice, time, size and the number of
    tumor failures, so means over the cases with a distance never hide the cases without."""
    rows = []
    for model in model_names(evaluation):
        tumor = _rows_of(evaluation.rows, model, "tumor")
        liver = _rows_of(evaluation.rows, model, "liver")
        info = next((m for m in evaluation.models if m.get("model") == model), {})
        lesion = _pooled(_lesions_of(evaluation.lesion_rows, model, "lits", "all"))
        rows.append(
            [
                model,
                *(_number(_mean(_values(tumor, key)), places) for key, places in SEED_TUMOR),
                _number(_mean(_values(liver, "dice")), 4),
                _number(_mean(_values(tumor, "hd95_mm")), 2),
                _number(lesion["f1"], 4),
                _number(global_dice(tumor), 4),
                _number(info.get("seconds_per_case"), 2),
                _number(info.get("size_mb"), 1),
                f"{sum(map(is_failure, tumor))}/{len(tumor)}",
            ]
        )
    return _table(SEED_HEADER, rows)


def snapshot(
    model: str,
    case: str,
    truth: np.ndarray,
    prediction: np.ndarray,
    ct: np.ndarray | None = None,
    spacing_zyx: Sequence[float] = (1.0, 1.0, 1.0),
) -> CaseSnapshot:
    """Keep one axial slice of a case (copies), so a report over thousands of cases stays small.

    The slice is the one with the most truth tumor, else the most truth liver, else the most
    predicted foreground, else the middle one: the slice where a reader can judge the result.
    """
    truth = np.asarray(truth)
    prediction = np.asarray(prediction)
    if truth.ndim != 3 or truth.shape != prediction.shape:
        raise DeepLiverError(
            f"{model} / {case}: truth {truth.shape} and prediction {prediction.shape} must be "
            "3D arrays of one shape"
        )
    if ct is not None and np.shape(ct) != truth.shape:
        raise DeepLiverError(f"{model} / {case}: CT {np.shape(ct)} is not shaped {truth.shape}")
    k = choose_slice(truth, prediction)
    return CaseSnapshot(
        model=model,
        case=case,
        slice_index=k,
        truth=np.array(truth[k], dtype=np.uint8),
        prediction=np.array(prediction[k], dtype=np.uint8),
        ct=None if ct is None else np.array(ct[k]),
        spacing_yx=(float(spacing_zyx[1]), float(spacing_zyx[2])),
    )


def choose_slice(truth: np.ndarray, prediction: np.ndarray) -> int:
    """Index (first axis) of the slice with the most truth tumor, liver, predicted foreground."""
    for counts in (
        (truth == 2).sum(axis=(1, 2)),
        (truth > 0).sum(axis=(1, 2)),
        (prediction > 0).sum(axis=(1, 2)),
    ):
        if counts.any():
            return int(np.argmax(counts))
    return truth.shape[0] // 2


# --- Row helpers, shared with the plots --------------------------------------------------------


def model_names(evaluation: Evaluation) -> list[str]:
    """Models in the order ``evaluation.models`` lists them, then any only the rows name."""
    names: dict[str, None] = {}
    for row in (*evaluation.models, *evaluation.rows, *evaluation.lesion_rows):
        names.setdefault(str(row["model"]), None)
    return list(names)


def case_names(evaluation: Evaluation) -> list[str]:
    """Every scored case, sorted."""
    return sorted({str(row["case"]) for row in evaluation.rows})


def structure_names(evaluation: Evaluation) -> list[str]:
    """The contract's structures first, then any other the rows name."""
    names = dict.fromkeys(STRUCTURES)
    names.update(dict.fromkeys(str(row["structure"]) for row in evaluation.rows))
    return list(names)


def present(value: object) -> bool:
    """True for a value a mean may use: not None, not NaN."""
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def is_failure(row: dict) -> bool:
    """Exactly one of the two masks is empty: the distances are undefined, the case failed."""
    return row.get("empty") in FAILURES


def global_dice(rows: Iterable[dict]) -> float | None:
    """Pooled Dice 2·ΣTP / (2·ΣTP + ΣFP + ΣFN): large and small cases weigh by their voxels."""
    counted = [r for r in rows if all(present(r.get(key)) for key in ("tp", "fp", "fn"))]
    tp, fp, fn = (sum(int(r[key]) for r in counted) for key in ("tp", "fp", "fn"))
    return 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else None


def lesion_totals(rows: Iterable[dict]) -> dict[str, int | float | None]:
    """Summed tp/fp/fn with precision, recall and F1 (None where a ratio is 0/0)."""
    return _pooled(list(rows))


# --- Sections ----------------------------------------------------------------------------------


def _header(evaluation: Evaluation) -> str:
    models = model_names(evaluation)
    return (
        "# DeepLiver evaluation\n\n"
        f"- Models ({len(models)}): {', '.join(models) or MISSING}\n"
        f"- Cases scored: {len(case_names(evaluation))}\n"
        f"- Structures: {', '.join(structure_names(evaluation))}\n"
        f"- Surface Dice tolerance: {evaluation.tolerance_mm:g} mm"
    )


def _notes(notes: Sequence[str]) -> str:
    lines = [f"- {note}" for note in notes] or ["None."]
    return "## Notes\n\n" + "\n".join(lines)


def _unmatched(unmatched: dict[str, list[str]]) -> str:
    lines = [
        f"- {kind} ({len(names)}): {', '.join(map(str, names))}"
        for kind, names in unmatched.items()
        if names
    ]
    if not lines:
        lines = ["None: every prediction was paired with its truth."]
    return "## Unmatched cases\n\nNot scored, listed so none is lost.\n\n" + "\n".join(lines)


def _structure_sections(evaluation: Evaluation) -> str:
    parts = ["## Per-case metrics\n\nMean and median over the cases where the metric exists."]
    for model in model_names(evaluation):
        for structure in structure_names(evaluation):
            rows = _rows_of(evaluation.rows, model, structure)
            if rows:
                parts.append(_structure_table(model, structure, rows))
    return "\n\n".join(parts)


def _structure_table(model: str, structure: str, rows: list[dict]) -> str:
    failures = [r for r in rows if is_failure(r)]
    both = [r for r in rows if r.get("empty") == "both"]
    failed = ", ".join(f"{r['case']} ({r['empty']} empty)" for r in failures)
    lines = [
        f"### {model} — {structure}",
        "",
        f"- Cases: {len(rows)}",
        f"- Failures (exactly one mask empty): {len(failures)}" + (f": {failed}" if failed else ""),
        f"- Both empty: {len(both)}"
        + (f": {', '.join(str(r['case']) for r in both)}" if both else ""),
        "",
    ]
    table = []
    for key, label, places in METRICS:
        values = _values(rows, key)
        table.append(
            [
                label,
                _number(_mean(values), places),
                _number(_median(values), places),
                str(len(values)),
            ]
        )
    return (
        "\n".join(lines) + "\n" + _table(["Metric", "Mean", "Median", "Cases with a value"], table)
    )


def _global_dice(evaluation: Evaluation) -> str:
    table = []
    for model in model_names(evaluation):
        for structure in structure_names(evaluation):
            rows = _rows_of(evaluation.rows, model, structure)
            if rows:
                sums = [
                    sum(int(r[k]) for r in rows if present(r.get(k))) for k in ("tp", "fp", "fn")
                ]
                table.append([model, structure, *map(str, sums), _number(global_dice(rows), 4)])
    return (
        "## Global (pooled) Dice\n\n2·ΣTP / (2·ΣTP + ΣFP + ΣFN), voxels summed over all cases.\n\n"
        + _table(["Model", "Structure", "ΣTP", "ΣFP", "ΣFN", "Global Dice"], table)
    )


def _lesion_section(evaluation: Evaluation) -> str:
    rows = evaluation.lesion_rows
    table = []
    for model in model_names(evaluation):
        for rule in _ordered({str(r["rule"]) for r in rows}, RULES):
            for size in _ordered({str(r["size_class"]) for r in rows}, SIZE_CLASSES):
                chosen = _lesions_of(rows, model, rule, size)
                if chosen:
                    t = _pooled(chosen)
                    table.append(
                        [model, rule, size, str(t["tp"]), str(t["fp"]), str(t["fn"])]
                        + [_number(t[key], 4) for key in ("precision", "recall", "f1")]
                    )
    if not table:
        return "## Lesion detection\n\nNo lesion rows."
    header = ["Model", "Rule", "Size", "TP", "FP", "FN", "Precision", "Recall", "F1"]
    return "## Lesion detection\n\nCounts summed over all cases.\n\n" + _table(header, table)


def _box_section(evaluation: Evaluation) -> str:
    """Detectors on their own terms: boxes per slice (IoU >= 0.5) and per 3D lesion."""
    rows = evaluation.box_rows
    if not rows:
        return ""
    table = []
    for model in _ordered({str(r["model"]) for r in rows}, []):
        for level in ("slice", "lesion"):
            chosen = [r for r in rows if r["model"] == model and r["level"] == level]
            if chosen:
                t = _pooled(chosen)
                table.append(
                    [model, level, str(t["tp"]), str(t["fp"]), str(t["fn"])]
                    + [_number(t[key], 4) for key in ("precision", "recall")]
                )
    header = ["Detector", "Level", "TP", "FP", "FN", "Precision", "Recall"]
    return (
        "## Box detection\n\nDetectors scored on their boxes: per slice (a 3D box cut by the "
        "slice against the tumor components' boxes, IoU >= 0.5) and per 3D lesion (against the "
        "lesions' boxes in mm, IoU >= 0.5); counts summed over all cases. Their rows in the "
        'tables above, marked "(box mask)", score the mask their boxes imply (box inside the '
        "liver), not a segmentation.\n\n" + _table(header, table)
    )


def _figures() -> str:
    from deepliver.evaluation import plots

    lines = [f"### {caption}\n\n![{caption}]({name}.png)" for name, caption in plots.PLOTS.items()]
    return "## Figures\n\n" + "\n\n".join(lines)


# --- Small pieces ------------------------------------------------------------------------------


def _write_csv(path: Path, columns: list[str], rows: list[dict]) -> Path:
    def write(temporary: Path) -> None:
        with open(temporary, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            for row in rows:
                writer.writerow([_csv_cell(row.get(column)) for column in columns])

    return write_atomically(path, write)


def _columns(rows: list[dict], known: Sequence[str]) -> list[str]:
    """The known columns in their fixed order, then any extra key the rows carry, sorted."""
    extra = sorted({key for row in rows for key in row} - set(known))
    return [*known, *extra]


def _csv_cell(value: object) -> str:
    if not present(value):
        return ""
    if isinstance(value, bool | str):
        return str(value)
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return f"{float(value):.6g}"
    return str(value)


def _rows_of(rows: list[dict], model: str, structure: str) -> list[dict]:
    return [r for r in rows if r["model"] == model and r["structure"] == structure]


def _lesions_of(rows: list[dict], model: str, rule: str, size: str) -> list[dict]:
    return [
        r for r in rows if r["model"] == model and r["rule"] == rule and r["size_class"] == size
    ]


def _pooled(rows: list[dict]) -> dict[str, int | float | None]:
    tp, fp, fn = (sum(int(r[k]) for r in rows if present(r.get(k))) for k in ("tp", "fp", "fn"))
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "f1": 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else None,
    }


def _values(rows: list[dict], key: str) -> list[float]:
    return [float(r[key]) for r in rows if present(r.get(key))]


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _number(value: float | None, places: int) -> str:
    if not present(value):
        return MISSING
    text = f"{value:.{places}f}"
    return text.lstrip("-") if float(text) == 0 else text  # no "-0.00"


def _ordered(found: set[str], preferred: Sequence[str]) -> list[str]:
    return [name for name in preferred if name in found] + sorted(found - set(preferred))


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = [_line(header), _line(["---"] * len(header))]
    return "\n".join(lines + [_line(row) for row in rows])


def _line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
