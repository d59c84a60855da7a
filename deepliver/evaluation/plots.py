"""The report's figures: Dice and HD95 spread, per-case Dice, lesion recall, worst cases.

Every figure is a plain matplotlib ``Figure`` (no pyplot, no global backend) drawn off screen
and written atomically as PNG. Failures (exactly one mask empty) are never
hidden: Dice plots draw them at 0 (their value by the rules) with a cross, distance plots count
them in the panel title since they have no distance to draw.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from deepliver.annotation.structures import LIVER, TUMOR
from deepliver.evaluation.report import (
    RULES,
    SIZE_CLASSES,
    case_names,
    is_failure,
    lesion_totals,
    model_names,
    present,
)
from deepliver.evaluation.results import CaseSnapshot, Evaluation
from deepliver.io.atomic import write_atomically

DPI = 110
PANELS = ("liver", "tumor")
WINDOW = (40.0 - 200.0, 40.0 + 200.0)  # soft tissue, W 400 / L 40, as in the overview PNGs
NEUTRAL_GREY = 0.45
WORST = 3
MAX_TICK_LABELS = 40
FAILURE_MARK = {"marker": "x", "color": "black", "s": 28, "linewidths": 1.2, "zorder": 4}
TRUTH_STYLE = {"liver": (LIVER.color_float, "solid"), "tumor": (TUMOR.color_float, "solid")}
PREDICTION_STYLE = {"liver": ("#ffd92f", "dashed"), "tumor": ("#ff2d2d", "dashed")}

# File stem -> caption; the summary links them in this order.
PLOTS: dict[str, str] = {
    "dice_boxplot": "Dice per model (failures drawn as 0)",
    "hd95_boxplot": "HD95 per model, over cases with a distance",
    "per_case_dice": "Dice per case",
    "lesion_detection": "Lesion recall by size class",
    "worst_cases": "Worst cases per model (truth solid, prediction dashed)",
}


def write_plots(evaluation: Evaluation, folder: Path) -> dict[str, Path]:
    """Write every figure of :data:`PLOTS` into ``folder``; returns {stem: path}."""
    drawers: dict[str, Callable[[Evaluation], Figure]] = {
        "dice_boxplot": dice_boxplot,
        "hd95_boxplot": hd95_boxplot,
        "per_case_dice": per_case_dice,
        "lesion_detection": lesion_detection,
        "worst_cases": worst_cases,
    }
    return {name: save(drawers[name](evaluation), Path(folder) / f"{name}.png") for name in PLOTS}


def save(figure: Figure, path: Path) -> Path:
    """Write ``figure`` as PNG atomically. Figures are made without pyplot: no GUI backend is
    touched (inside Slicer too) and nothing stays registered once the figure is dropped."""
    return write_atomically(
        path, lambda p: figure.savefig(p, format="png", dpi=DPI, bbox_inches="tight")
    )


# --- Figures -----------------------------------------------------------------------------------


def dice_boxplot(evaluation: Evaluation) -> Figure:
    """Box plots of Dice per model, one panel per structure; failures enter as 0."""
    models = model_names(evaluation)
    figure, axes = _panels(len(PANELS), width=max(4.0, 0.9 * len(models) + 2.0))
    for ax, structure in zip(axes, PANELS, strict=True):
        rows = [_rows(evaluation, model, structure) for model in models]
        values = [[v for v in map(drawn_dice, group) if v is not None] for group in rows]
        _boxes(ax, values, models)
        for position, group in enumerate(rows):
            failed = [r for r in group if is_failure(r)]
            ax.scatter([position] * len(failed), [0.0] * len(failed), **FAILURE_MARK)
        failures = sum(is_failure(r) for group in rows for r in group)
        ax.set_title(f"{structure.capitalize()} Dice\n{failures} failure(s) drawn as 0 (×)")
        ax.set_ylim(-0.04, 1.04)
        ax.set_ylabel("Dice")
    figure.suptitle("Dice per case, by model")
    return figure


def hd95_boxplot(evaluation: Evaluation) -> Figure:
    """Box plots of HD95 (mm) over cases with a distance; titles count the cases without."""
    models = model_names(evaluation)
    figure, axes = _panels(len(PANELS), width=max(4.0, 0.9 * len(models) + 2.0))
    for ax, structure in zip(axes, PANELS, strict=True):
        rows = [_rows(evaluation, model, structure) for model in models]
        values = [
            [float(r["hd95_mm"]) for r in group if present(r.get("hd95_mm"))] for group in rows
        ]
        without = [r for group in rows for r in group if not present(r.get("hd95_mm"))]
        failures = sum(is_failure(r) for r in without)
        _boxes(ax, values, models)
        if not any(values):
            _say(ax, "no case has a distance")
        ax.set_title(
            f"{structure.capitalize()} HD95\n{len(without)} case(s) without a distance "
            f"({failures} failure(s))"
        )
        ax.set_ylabel("HD95 (mm)")
        ax.set_ylim(bottom=0)
    figure.suptitle("95th percentile Hausdorff distance, by model")
    return figure


def per_case_dice(evaluation: Evaluation) -> Figure:
    """Grouped bars of Dice per case (tumor above, liver below), one colour per model."""
    models = model_names(evaluation)
    cases = case_names(evaluation)
    width = min(40.0, max(8.0, 0.16 * len(cases) * max(1, len(models)) + 2.5))
    figure = Figure(figsize=(width, 7.5), layout="constrained")
    axes = figure.subplots(2, 1, squeeze=False)
    bar = 0.8 / max(1, len(models))
    for ax, structure in zip(axes[:, 0], ("tumor", "liver"), strict=True):
        for m, model in enumerate(models):
            rows = {r["case"]: r for r in _rows(evaluation, model, structure)}
            offset = (m - (len(models) - 1) / 2) * bar
            dice = [(c + offset, drawn_dice(rows.get(case))) for c, case in enumerate(cases)]
            known = [(x, y) for x, y in dice if y is not None]
            if known:
                ax.bar(*zip(*known, strict=True), width=bar, color=_colour(m, len(models)))
            failed = [c + offset for c, case in enumerate(cases) if is_failure(rows.get(case, {}))]
            ax.scatter(failed, [0.02] * len(failed), **FAILURE_MARK)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel(f"{structure.capitalize()} Dice")
        ax.set_title(f"{structure.capitalize()} Dice per case (× failure, Dice 0)")
        _category_ticks(ax, cases)
        ax.grid(axis="y", alpha=0.3)
    _model_legend(figure, models, failures=True)
    return figure


def lesion_detection(evaluation: Evaluation) -> Figure:
    """Lesion recall per size class and model, one panel per matching rule, bars annotated
    with detected / truth lesions so a recall of 1 on one lesion reads as what it is."""
    models = model_names(evaluation)
    rows = evaluation.lesion_rows
    rules = _ordered({str(r["rule"]) for r in rows}, RULES) or list(RULES)
    sizes = _ordered({str(r["size_class"]) for r in rows}, SIZE_CLASSES) or list(SIZE_CLASSES)
    width = max(6.0, 0.5 * len(sizes) * max(1, len(models)) + 2.0)
    figure, axes = _panels(len(rules), width=width)
    bar = 0.8 / max(1, len(models))
    for ax, rule in zip(axes, rules, strict=True):
        for m, model in enumerate(models):
            offset = (m - (len(models) - 1) / 2) * bar
            for s, size in enumerate(sizes):
                totals = lesion_totals(_lesions(rows, model, rule, size))
                truth = int(totals["tp"]) + int(totals["fn"])
                recall = totals["recall"] or 0.0
                ax.bar(s + offset, recall, width=bar, color=_colour(m, len(models)))
                ax.annotate(
                    f"{totals['tp']}/{truth}",
                    (s + offset, recall),
                    xytext=(0, 2),
                    textcoords="offset points",
                    ha="center",
                    fontsize=7,
                )
        ax.set_xticks(range(len(sizes)), [_size_label(rows, rule, size) for size in sizes])
        ax.set_ylim(0, 1.12)
        ax.set_ylabel("Recall (detected / truth lesions)")
        ax.set_title(f"Rule: {rule}")
        if not rows:
            _say(ax, "no lesion rows")
    figure.suptitle("Lesion detection by size class")
    _model_legend(figure, models)
    return figure


def worst_cases(evaluation: Evaluation) -> Figure:
    """For each model, the cases with the lowest tumor Dice (then liver Dice), as overlays."""
    models = model_names(evaluation) or [""]
    snapshots = {(s.model, s.case): s for s in evaluation.snapshots}
    figure = Figure(figsize=(3.3 * WORST, 3.5 * len(models)), layout="constrained")
    axes = figure.subplots(len(models), WORST, squeeze=False)
    for row_axes, model in zip(axes, models, strict=True):
        chosen = worst_case_names(evaluation, model)
        for ax, case in zip(row_axes, [*chosen, *[None] * WORST], strict=False):
            ax.set_axis_off()
            if case is not None:
                dice = {s: drawn_dice(_row(evaluation, model, case, s)) for s in PANELS}
                _overlay(ax, snapshots.get((model, case)))
                ax.set_title(
                    f"{model}: {case}\nDice tumor {_short(dice['tumor'])}, "
                    f"liver {_short(dice['liver'])}",
                    fontsize=9,
                )
        if not chosen:
            _say(row_axes[0], f"{model}: no cases")
    figure.legend(handles=_outline_handles(), loc="outside lower center", ncol=4, fontsize=8)
    figure.suptitle("Lowest tumor Dice per model")
    return figure


# --- Row reading -------------------------------------------------------------------------------


def drawn_dice(row: dict | None) -> float | None:
    """Dice as plotted: the row's value, 0 for a failure without one, None when unknown."""
    if row is None:
        return None
    if present(row.get("dice")):
        return float(row["dice"])
    return 0.0 if is_failure(row) else None


def worst_case_names(evaluation: Evaluation, model: str, count: int = WORST) -> list[str]:
    """The ``count`` cases with the lowest tumor Dice; cases without tumor (both masks empty,
    or no tumor row) rank after them, all tied ones by their liver Dice."""

    def score(case: str, structure: str) -> float:
        row = _row(evaluation, model, case, structure)
        value = drawn_dice(row)
        no_structure = row is None or row.get("empty") == "both" or value is None
        return math.inf if no_structure else value

    cases = sorted({r["case"] for r in evaluation.rows if r["model"] == model})
    return sorted(cases, key=lambda c: (score(c, "tumor"), score(c, "liver"), c))[:count]


def _rows(evaluation: Evaluation, model: str, structure: str) -> list[dict]:
    return [r for r in evaluation.rows if r["model"] == model and r["structure"] == structure]


def _row(evaluation: Evaluation, model: str, case: str, structure: str) -> dict | None:
    return next(
        (
            r
            for r in evaluation.rows
            if r["model"] == model and r["case"] == case and r["structure"] == structure
        ),
        None,
    )


def _lesions(rows: list[dict], model: str, rule: str, size: str) -> list[dict]:
    return [
        r for r in rows if r["model"] == model and r["rule"] == rule and r["size_class"] == size
    ]


def _size_label(rows: list[dict], rule: str, size: str) -> str:
    """The class name, with its truth lesion count when every model saw the same lesions."""
    totals = [lesion_totals(_lesions(rows, m, rule, size)) for m in {r["model"] for r in rows}]
    counts = {t["tp"] + t["fn"] for t in totals}
    return f"{size}\nn={counts.pop()}" if len(counts) == 1 else size


def _ordered(found: set[str], preferred: Sequence[str]) -> list[str]:
    return [name for name in preferred if name in found] + sorted(found - set(preferred))


# --- Drawing -----------------------------------------------------------------------------------


def _panels(count: int, width: float) -> tuple[Figure, list[Axes]]:
    figure = Figure(figsize=(width * count, 4.8), layout="constrained")
    return figure, list(figure.subplots(1, count, squeeze=False)[0])


def _boxes(ax: Axes, values: list[list[float]], models: list[str]) -> None:
    """One box per model that has values, with the cases as jittered points over it."""
    filled = [(i, v) for i, v in enumerate(values) if v]
    if filled:
        ax.boxplot(
            [v for _, v in filled],
            positions=[i for i, _ in filled],
            widths=0.6,
            showfliers=False,
            medianprops={"color": "black"},
        )
    jitter = np.random.default_rng(0)
    for i, v in filled:
        x = i + jitter.uniform(-0.15, 0.15, len(v))
        ax.scatter(x, v, s=12, alpha=0.7, color=_colour(i, len(models)), zorder=3)
    _category_ticks(ax, models)
    ax.set_xlim(-0.6, max(len(models), 1) - 0.4)
    ax.grid(axis="y", alpha=0.3)


def _category_ticks(ax: Axes, labels: list[str]) -> None:
    """Label every category while they fit, else every k-th; rotate long or many labels."""
    step = max(1, math.ceil(len(labels) / MAX_TICK_LABELS))
    positions = list(range(0, len(labels), step))
    longest = max((len(str(label)) for label in labels), default=0)
    rotation = 90 if len(labels) > 12 else 30 if longest * len(labels) > 40 else 0
    ax.set_xticks(
        positions,
        [str(labels[p]) for p in positions],
        rotation=rotation,
        ha="right" if rotation == 30 else "center",
        fontsize=8 if len(labels) > 12 else 9,
    )


def _overlay(ax: Axes, snap: CaseSnapshot | None) -> None:
    """The slice (CT windowed, else neutral grey) with truth and prediction outlines."""
    if snap is None:
        _say(ax, "no snapshot")
        return
    aspect = snap.spacing_yx[0] / snap.spacing_yx[1]
    if snap.ct is not None:
        ax.imshow(snap.ct, cmap="gray", vmin=WINDOW[0], vmax=WINDOW[1], aspect=aspect)
    else:
        background = np.full(snap.truth.shape, NEUTRAL_GREY)
        ax.imshow(background, cmap="gray", vmin=0, vmax=1, aspect=aspect)
    for labels, styles in ((snap.truth, TRUTH_STYLE), (snap.prediction, PREDICTION_STYLE)):
        for structure, (colour, style) in styles.items():
            mask = labels == TUMOR.label if structure == "tumor" else labels > 0
            if mask.any() and not mask.all():
                ax.contour(
                    mask.astype(np.float32),
                    levels=[0.5],
                    colors=[colour],
                    linestyles=style,
                    linewidths=1.3,
                )
    label = f"slice {snap.slice_index + 1}"
    ax.text(0.02, 0.02, label, transform=ax.transAxes, color="white", fontsize=7, va="bottom")


def _outline_handles() -> list[Line2D]:
    handles = []
    for source, styles in (("truth", TRUTH_STYLE), ("prediction", PREDICTION_STYLE)):
        for structure, (colour, style) in styles.items():
            label = f"{structure} {source}"
            handles.append(Line2D([], [], color=colour, linestyle=style, lw=2, label=label))
    return handles


def _model_legend(figure: Figure, models: list[str], failures: bool = False) -> None:
    handles = [
        Line2D([], [], color=_colour(m, len(models)), lw=6, label=model)
        for m, model in enumerate(models)
    ]
    if failures:
        handles.append(
            Line2D([], [], color="black", marker="x", lw=0, label="failure (one mask empty)")
        )
    figure.legend(
        handles=handles,
        loc="outside right center",
        fontsize=8,
        ncol=max(1, math.ceil(len(handles) / 25)),
    )


def _colour(index: int, count: int) -> tuple[float, float, float, float]:
    palette = matplotlib.colormaps["tab10" if count <= 10 else "tab20"]
    return palette(index % palette.N)


def _say(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="grey")


def _short(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"
