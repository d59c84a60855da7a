"""The Inference module's run: "Detect liver/tumor" from a volume node to its results in Slicer.

The volume shown in Slicer is written to a temporary NRRD with the core, and a background
``deepliver segment INPUT.nrrd -o OUT --model FAMILY --device DEVICE [--detector NAME]``
segments it. The input is
always that NRRD, never the DICOM files: the result must lie on the exact grid of the node the
user sees (which may have been cropped, resampled or loaded with Slicer's own DICOM choices),
and the store revision, tied to the series by its fingerprint, is the DICOM-linked record. So
no DICOM SEG is written here (``deepliver segment DICOMDIR --dicom-seg`` makes one); the
modality check the command does on DICOM input is done here from Slicer's DICOM database.

Back from the command: ``labels.seg.nrrd`` (read with the core) becomes a segmentation node
with coded Liver / Tumor n segments on the volume's grid, each lesion of ``lesions.json`` an ROI
"Lesion n" (with a detector: each 3D box of ``detections.json`` instead, with its score) and a
row of the lesion table; for a DICOM series and a store folder, the result is
saved as a model revision (source: the models of ``summary.json``, boxes: the lesions') from
which the Review module starts.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from deepliver.annotation.record import MODEL
from deepliver.annotation.segmentation import Segmentation
from deepliver.errors import DeepLiverError
from deepliver.inference.lesions import Lesion, read_lesion_json
from deepliver.volume import Volume

DEVICES = ("auto", "cpu", "cuda")
# The Review module's setting: both modules use the same annotation store.
LESION_COLUMNS = (
    "Lesion",
    "Volume (mL)",
    "Longest axial diameter (mm)",
    "Mean HU",
    "Model's mean P(tumor)",
)
MODEL_READER = "DeepLiver"  # the reader of a model revision
INPUT_FILE = "input.nrrd"
DETECTOR_SCORE_ATTRIBUTE = "DeepLiver.DetectorScore"
OUTPUT_FOLDER = "result"


def model_families(cards) -> list[str]:
    """The model families to offer (``unet2d`` for the card ``liver-unet2d``): one per liver
    model, as ``deepliver segment --model`` takes them, in card order."""
    families = []
    for card in cards:
        if card.stage == "liver" and card.name.startswith("liver-"):
            family = card.name.removeprefix("liver-")
            if family and family not in families:
                families.append(family)
    return families


def bundled_families() -> tuple[list[str], str | None]:
    """(families, problem): the bundled models' families, or why there are none. Listing the
    cards imports ``deepliver.models`` and so PyTorch: without it, none yet and no problem
    (the module lists them again once the packages are installed)."""
    try:
        from deepliver.models.card import list_models

        families = model_families(list_models())
    except ImportError:
        return [], None
    except DeepLiverError as error:
        return [], str(error)
    return families, (None if families else "no bundled liver model found")


def detector_names(cards) -> list[str]:
    """The detectors to offer (``yolo`` for the card ``tumor-yolo``), as ``--detector`` takes
    them."""
    return [
        card.name.removeprefix("tumor-")
        for card in cards
        if card.stage == "detection" and card.name == f"tumor-{card.architecture}"
    ]


def bundled_detectors() -> list[str]:
    """The bundled detectors; none when the models cannot be listed (yet)."""
    try:
        from deepliver.models.card import list_models

        return detector_names(list_models())
    except (ImportError, DeepLiverError):
        return []


def segment_args(
    input_path, out_dir, family: str, device: str, detector: str | None = None
) -> list[str]:
    """The arguments of ``deepliver segment`` (the runner adds ``--progress jsonl``)."""
    if not family:
        raise DeepLiverError("no model chosen: the bundled models were not found")
    if device not in DEVICES:
        raise DeepLiverError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    args = [str(input_path), "-o", str(out_dir), "--model", family, "--device", device]
    return args + (["--detector", detector] if detector else [])


def modality_problem(modality: str | None) -> str | None:
    """Why a DICOM series is not segmented (the models know CT only), or None."""
    if modality and modality.upper() != "CT":
        return f"the series is {modality}, not CT: the models are trained on CT only"
    return None


@dataclass(frozen=True)
class InferenceResult:
    """What ``deepliver segment`` wrote, read back."""

    segmentation: Segmentation
    lesions: list[Lesion]
    summary: dict
    detections: list | None = None  # DetectedLesion boxes when a detector ran


def read_result(outputs: dict | None) -> InferenceResult:
    """The segmentation, lesions and summary named by the command's result event."""
    from deepliver.io.seg_nrrd import read_seg_nrrd

    outputs = outputs or {}
    missing = [k for k in ("labels_seg_nrrd", "lesions_json", "summary") if not outputs.get(k)]
    if missing:
        raise DeepLiverError(f"deepliver segment reported no {', '.join(missing)}")
    detections = None
    if outputs.get("detections_json"):
        from deepliver.detection.detect import read_detections

        detections = read_detections(Path(outputs["detections_json"]))
    return InferenceResult(
        read_seg_nrrd(Path(outputs["labels_seg_nrrd"])),
        read_lesion_json(Path(outputs["lesions_json"])),
        json.loads(Path(outputs["summary"]).read_text(encoding="utf-8")),
        detections,
    )


def lesion_name(lesion: Lesion) -> str:
    return f"Lesion {lesion.id}"


def tumor_segment(lesion: Lesion) -> str:
    """Lesion n is segment "Tumor n" (both numbered largest first by the core)."""
    return f"Tumor {lesion.id}"


def lesion_rows(lesions) -> list[tuple[str, ...]]:
    """The lesion table's cells, one row per lesion (see :data:`LESION_COLUMNS`)."""
    return [
        (
            str(lesion.id),
            f"{lesion.volume_ml:.2f}",
            f"{lesion.longest_axial_diameter_mm:.1f}",
            f"{lesion.mean_hu:.0f}",
            "" if lesion.mean_probability is None else f"{lesion.mean_probability:.2f}",
        )
        for lesion in lesions
    ]


def lesion_boxes(lesions, segment_names) -> list[dict]:
    """The store's box records of the lesions whose "Tumor n" segment is in the result."""
    from deepliver.annotation.review import box_record

    names = set(segment_names)
    return [
        box_record(tumor_segment(lesion), lesion.box_min_lps, lesion.box_max_lps)
        for lesion in lesions
        if tumor_segment(lesion) in names
    ]


def model_source(summary: dict) -> dict:
    """The store's source of a model revision: the summary's models, names and versions each
    joined with '+' (``liver-unet2d+tumor-unet2d``, ``0.1.0+0.1.0``)."""
    models = summary.get("models") or []
    if not models:
        raise DeepLiverError("the result's summary names no model")
    return {
        "kind": MODEL,
        "name": "+".join(str(m["name"]) for m in models),
        "version": "+".join(str(m.get("version") or "?") for m in models),
    }


def result_text(result: InferenceResult, saved: str = "") -> str:
    """One line for the status label."""
    summary = result.summary
    liver = summary.get("liver_volume_ml")
    parts = [
        "no liver found" if not liver else f"liver {liver:.0f} mL",
        f"{len(result.lesions)} lesion(s)",
    ]
    if result.detections is not None:
        parts.append(f"{len(result.detections)} detector box(es)")
    models = ", ".join(str(m["name"]) for m in summary.get("models") or [])
    text = "Done: " + ", ".join(parts) + (f" ({models})." if models else ".")
    return text + (f" {saved}" if saved else "")


@dataclass(frozen=True)
class InferenceRun:
    """A run's temporary folder: the input NRRD and the command's output folder."""

    workdir: Path

    @property
    def input(self) -> Path:
        return self.workdir / INPUT_FILE

    @property
    def output(self) -> Path:
        return self.workdir / OUTPUT_FOLDER


def prepare(volume: Volume, parent: str | None = None) -> InferenceRun:
    """Write ``volume`` into a new temporary folder for ``deepliver segment``."""
    from deepliver.io.image_files import write_image

    run = InferenceRun(Path(tempfile.mkdtemp(prefix="DeepLiver-", dir=parent)))
    write_image(volume, run.input)
    return run


def cleanup(run: InferenceRun | None) -> None:
    if run is not None:
        shutil.rmtree(run.workdir, ignore_errors=True)


# --- Slicer ------------------------------------------------------------------------------


def fill_lesion_table(table, rows) -> None:
    """Show :func:`lesion_rows` in a ``QTableWidget``."""
    import qt

    table.setColumnCount(len(LESION_COLUMNS))
    table.setHorizontalHeaderLabels(list(LESION_COLUMNS))
    table.setRowCount(len(rows))
    for row, cells in enumerate(rows):
        for column, text in enumerate(cells):
            table.setItem(row, column, qt.QTableWidgetItem(text))
    table.resizeColumnsToContents()


class InferenceSession:
    """The Inference module's logic: one run at a time, its results in the scene."""

    def __init__(self) -> None:
        self.run = None
        self.volume_node = None
        self.identity = None  # the store's SeriesIdentity, for a DICOM series with a store
        self.store = None
        self.store_note = ""
        self.segmentation_node = None
        self.shown_on = None  # ID of the volume node the segmentation node was made on
        self.roi_nodes: list = []
        self.rows: list[tuple[str, ...]] = []
        self.revision = None

    def start(
        self, volume_node, runner, family: str, device: str, store_folder="", detector=None
    ) -> None:
        """Write the volume and start ``deepliver segment``; ``finish`` reads the result."""
        from deepliver.annotation.store import AnnotationStore
        from DeepLiverSlicer import dicom_database
        from DeepLiverSlicer.dicom_identity import dicom_identity
        from DeepLiverSlicer.volumes import volume_from_node

        if volume_node is None:
            raise ValueError("select a CT volume first")
        self.rows = []
        dicom = dicom_identity(volume_node)
        row = _database_row(dicom.series_uid) if dicom else None
        problem = modality_problem(row.modality if row else None)
        if problem:
            raise DeepLiverError(problem)
        self.store = AnnotationStore(store_folder) if str(store_folder or "").strip() else None
        self.identity, self.store_note = None, ""
        if dicom is not None and self.store is not None:
            try:
                self.identity = dicom_database.loaded_series_identity(volume_node, row)
            except ValueError as error:  # detect all the same; say why nothing is stored
                self.store_note = f"Not saved in the store: {error}."
        run = prepare(volume_from_node(volume_node, copy=False))
        try:
            args = segment_args(run.input, run.output, family, device, detector)
            runner.start("segment", *args)
        except Exception:
            cleanup(run)
            raise
        self.run, self.volume_node = run, volume_node

    def finish(self, command, succeeded: bool) -> str:
        """Show a finished run's result; returns a line for the status label."""
        run, self.run = self.run, None
        try:
            if not succeeded:
                return ""
            result = read_result(command.result())
            self.show(result)
            return result_text(result, self.save(result))
        finally:
            cleanup(run)

    def show(self, result: InferenceResult) -> None:
        """The segmentation node, one ROI per lesion and the table rows of ``result``."""
        from DeepLiverSlicer import segmentations
        from DeepLiverSlicer.markups import PhysicalBox, roi_from_box
        from DeepLiverSlicer.review import ROI_SEGMENT_ATTRIBUTE, remove_nodes

        volume_node = self.volume_node
        previous = self.segmentation_node  # the last result's node, reused on the same volume
        if previous is None or previous.GetScene() is None or self.shown_on != volume_node.GetID():
            previous = None
        self.segmentation_node = segmentations.node_from_segmentation(
            result.segmentation,
            volume_node,
            f"{volume_node.GetName()} DeepLiver",
            segmentation_node=previous,
        )
        self.shown_on = volume_node.GetID()
        remove_nodes(*self.roi_nodes)
        self.roi_nodes = []
        if result.detections is not None:  # the detector's boxes, for the reader to keep or not
            for found in result.detections:
                box = PhysicalBox(found.box_min_lps_mm, found.box_max_lps_mm)
                roi = roi_from_box(box, f"Lesion {found.number}")
                roi.SetAttribute(DETECTOR_SCORE_ATTRIBUTE, f"{found.score:.3f}")
                self.roi_nodes.append(roi)
        else:
            for lesion in result.lesions:
                box = PhysicalBox(lesion.box_min_lps, lesion.box_max_lps)
                roi = roi_from_box(box, lesion_name(lesion))
                # The Review module treats it as the box of its tumor segment.
                roi.SetAttribute(ROI_SEGMENT_ATTRIBUTE, tumor_segment(lesion))
                self.roi_nodes.append(roi)
        self.rows = lesion_rows(result.lesions)

    def save(self, result: InferenceResult) -> str:
        """Save the result as a model revision when the volume is a DICOM series and a store
        is set; returns what was done, for the status label."""
        from DeepLiverSlicer.volumes import volume_from_node

        self.revision = None
        if self.identity is None:
            return self.store_note
        segmentation = result.segmentation
        if not segmentation.masks.any():
            return "Nothing found: no model revision saved."
        grid = volume_from_node(self.volume_node, copy=False).grid
        on_grid = Segmentation(grid, segmentation.segments, segmentation.masks)
        self.revision = self.store.save(
            self.identity,
            grid,
            on_grid,
            reader=MODEL_READER,
            status="draft",
            source=model_source(result.summary),
            boxes=lesion_boxes(result.lesions, [s.name for s in segmentation.segments]),
        )
        return f"Saved as model revision {self.revision.number} in the store."


def _database_row(series_uid: str):
    """The DICOM database's row of the series; None without an open database."""
    import slicer

    from DeepLiverSlicer.dicom_database import series_row

    database = slicer.dicomDatabase
    if database is None or not database.isOpen:
        return None
    return series_row(series_uid, database)
