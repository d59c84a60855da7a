"""The Training module's work that is not widgets: the argument lists of ``deepliver export``,
``launch`` and ``models add``, the presets, the run's status and its log as plot columns.

The module runs each command with :class:`DeepLiverSlicer.runner.CommandRunner`. ``deepliver
launch`` returns at once: a local run is detached (Slicer does not own it, closing Slicer does
not stop it), so the module follows it by reading the run folder with the core
(:func:`deepliver.training.launch.status`) every few seconds, and plots ``RUN/log.jsonl``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from deepliver.errors import DeepLiverError
from deepliver.models.card import ARCHITECTURES, DETECTION_ARCHITECTURES
from deepliver.training.launch import TRAIN_LOG

# Where the module remembers the remote command template and the DICOM folder (QSettings).
# The template is a command line (``ssh gpu1 {command}``): it relies on the user's own ssh keys
# or scheduler login, and DeepLiver stores no credentials.
REMOTE_TEMPLATE_SETTING = "DeepLiver/RemoteTemplate"
DICOM_FOLDER_SETTING = "DeepLiver/DicomFolder"
EXPORT_STATUSES = ("complete", "approved")  # `deepliver export --status`; drafts never train
MODEL_FOLDER = "model"  # deepliver.training.loop.MODEL_FOLDER (the loop imports torch)
WATCH_INTERVAL_MS = 3000
PLOT_TITLE = "DeepLiver training"
PLOT_COLUMNS = ("epoch", "loss")  # then the validation metric's name


@dataclass(frozen=True)
class Preset:
    """How long and where a run trains; ``validation``: cases held out, at most."""

    epochs: int
    steps: int
    device: str
    validation: int


PRESETS = {
    "fast CPU": Preset(epochs=5, steps=20, device="cpu", validation=1),
    "full GPU": Preset(epochs=100, steps=250, device="cuda", validation=4),
}


def stages_for(architecture: str) -> tuple[str, ...]:
    """The stages an architecture trains for: U-Nets segment (the 2.5D one also the fine liver
    edge), detectors box tumors."""
    if architecture not in ARCHITECTURES:
        raise DeepLiverError(f"unknown architecture {architecture!r}")
    if architecture in DETECTION_ARCHITECTURES:
        return ("detection",)
    return ("liver", "liver-fine", "tumor") if architecture == "unet2d" else ("liver", "tumor")


def validation_count(preset: Preset, cases: int) -> int:
    """Cases to hold out for validation: the preset's, leaving at least one to train on."""
    if cases < 2:
        raise DeepLiverError(
            f"the dataset has {cases} case(s): training needs one to train on and one to "
            "validate on; export more series"
        )
    return min(preset.validation, cases - 1)


def run_name(architecture: str, stage: str, now: float | None = None) -> str:
    """A run folder name that is also a model name no bundled model has."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return f"{stage}-{architecture}-{stamp}"


def default_run_folder(dataset: Path, name: str) -> Path:
    """Beside the dataset, never inside it: exporting again rewrites the dataset folder."""
    dataset = Path(dataset)
    return dataset.parent / f"{dataset.name}-runs" / name


def export_args(
    store: Path, dicom: Path, dataset: Path, status: str, key_file: Path | None = None
) -> list[str]:
    """Arguments of ``deepliver export``: the store's series of ``status`` as a dataset
    (``key_file``: the pseudonym key, default the user's; a self-test keeps its own)."""
    if status not in EXPORT_STATUSES:
        raise DeepLiverError(f"export status must be one of {', '.join(EXPORT_STATUSES)}")
    args = ["--store", str(store), "--dicom", str(dicom), "-o", str(dataset), "--status", status]
    return args + (["--key-file", str(key_file)] if key_file else [])


def train_args(
    architecture: str,
    stage: str,
    dataset: Path,
    preset: Preset,
    validation: int,
    name: str,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """Arguments of ``deepliver train`` without ``-o`` (``deepliver launch`` adds RUN)."""
    if stage not in stages_for(architecture):
        raise DeepLiverError(f"{architecture} does not train a {stage} model")
    return [
        "--arch", architecture, "--stage", stage, "--data", str(dataset),
        "--epochs", str(preset.epochs), "--steps", str(preset.steps),
        "--validation", str(validation), "--device", preset.device, "--name", name, *extra,
    ]  # fmt: skip


def checked_template(template: str) -> str:
    """The remote template stripped ('' means local); refused when it cannot run the command."""
    template = (template or "").strip()
    if template and "{command}" not in template:
        raise DeepLiverError(
            f"remote template {template!r} has no {{command}}: it must run the train command"
        )
    return template


def launch_args(run: Path, train: list[str], template: str = "") -> list[str]:
    """Arguments of ``deepliver launch RUN [--remote TEMPLATE] -- TRAIN_ARGS``."""
    template = checked_template(template)
    remote = ["--remote", template] if template else []
    return [str(run), *remote, "--", *train]


def models_add_args(run: Path) -> list[str]:
    """Arguments of ``deepliver models add RUN/model``."""
    return ["add", str(Path(run) / MODEL_FOLDER)]


def has_model(run: Path | None) -> bool:
    return bool(run) and (Path(run) / MODEL_FOLDER / "model.json").is_file()


# --- following a run ----------------------------------------------------------------------


@dataclass(frozen=True)
class LogColumns:
    """The training log as plot columns: one row per finished epoch."""

    metric: str  # validation_dice (U-Nets) or validation_ap50 (detectors); "" before epoch 1
    epochs: list[int]
    losses: list[float]
    scores: list[float]

    def rows(self) -> list[tuple[float, float, float]]:
        return list(zip(self.epochs, self.losses, self.scores, strict=True))

    @property
    def names(self) -> list[str]:
        return [*PLOT_COLUMNS, self.metric or "validation"]


def read_log(path: Path) -> list[dict]:
    """The entries of a ``log.jsonl`` the loop may be writing: a last line without its newline
    is still being written and is skipped, as is any line that is not an epoch entry."""
    path = Path(path)
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    entries = []
    for line in lines[:-1]:  # the part after the last newline is unfinished
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and "epoch" in entry and "loss" in entry:
            entries.append(entry)
    return entries


def log_columns(entries: list[dict]) -> LogColumns:
    """Epoch, loss and the validation score of each entry (NaN where a score is missing)."""
    metric = next(
        (
            key
            for entry in entries
            for key in entry
            if key.startswith("validation_") and not key.endswith("_per_case")
        ),
        "",
    )
    return LogColumns(
        metric,
        [int(e["epoch"]) for e in entries],
        [float(e["loss"]) for e in entries],
        [float(e.get(metric, float("nan"))) for e in entries],
    )


def run_columns(run: Path) -> LogColumns:
    return log_columns(read_log(Path(run) / TRAIN_LOG))


def is_launched(run: Path | None) -> bool:
    from deepliver.training.launch import RECORD

    return bool(run) and (Path(run) / RECORD).is_file()


def still_going(state: str) -> bool:
    """Whether to keep polling: a remote run says 'unknown' until RUN is shared back."""
    return state in ("running", "unknown")


def status_line(status) -> str:
    """One line for the status label from a :class:`deepliver.training.launch.Status`."""
    parts = [status.state]
    if status.progress:
        fraction = status.progress.get("fraction")
        stage = status.progress.get("stage", "")
        parts.append(stage + ("" if fraction is None else f" ({100 * fraction:.0f}%)"))
    if status.epochs:
        last = status.epochs[-1]
        parts.append(f"epoch {last['epoch']}: loss {last['loss']:.4f}")
    if status.message:
        parts.append(status.message)
    return "; ".join(p for p in parts if p)


def series_summary(store: Path, status: str) -> str:
    """How many series of the store an export with ``status`` takes (or why none)."""
    from deepliver.annotation.store import AnnotationStore
    from deepliver.export.msd import select_series

    if not store or not Path(store).is_dir():
        return "Choose the annotation store folder."
    try:
        selected, notes = select_series(AnnotationStore(Path(store)), status)
    except DeepLiverError as error:
        return str(error)
    text = f"{len(selected)} series to export"
    return text + (f" ({len(notes)} note(s))" if notes else "")


def dataset_cases(dataset: Path) -> int:
    """The cases ``deepliver train --data DATASET`` reads (0 when it is not a dataset)."""
    from deepliver.datasets import cases_from

    try:
        return len(cases_from(str(dataset), part="train"))
    except DeepLiverError:
        return 0


# --- Slicer ------------------------------------------------------------------------------


class TrainingPlot:
    """The loss and validation score per epoch: a table, two series and a chart (made by
    ``slicer.util.plot``) shown in a plot view node that the module's plot widget displays,
    owned by the chart so that the main layout does not open a view of its own for it."""

    def __init__(self) -> None:
        self.nodes: dict = {}
        self.view_node = None

    def _present(self) -> bool:
        import slicer

        chart = self.nodes.get("chart")
        return chart is not None and slicer.mrmlScene.IsNodePresent(chart)

    def update(self, columns: LogColumns):
        """Show ``columns``; returns the plot view node (None before the first epoch)."""
        import numpy as np
        import slicer

        if not columns.epochs:
            return self.view_node if self._present() else None
        if not self._present():  # first plot, or the scene was closed
            self.nodes, self.view_node = {}, None
        array = np.array(columns.rows(), dtype=float)
        chart = slicer.util.plot(
            array, 0, columnNames=columns.names, title=PLOT_TITLE, show=False, nodes=self.nodes
        )
        chart.SetXAxisTitle("epoch")
        if self.view_node is None:
            view = slicer.vtkMRMLPlotViewNode()
            view.SetLayoutName("DeepLiverTrainingPlot")
            view.SetAndObserveParentLayoutNodeID(chart.GetID())
            self.view_node = slicer.mrmlScene.AddNode(view)
        self.view_node.SetPlotChartNodeID(chart.GetID())
        return self.view_node

    @property
    def rows(self) -> int:
        return self.nodes["table"].GetNumberOfRows() if self._present() else 0
