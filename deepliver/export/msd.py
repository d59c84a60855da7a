"""The annotation store as a de-identified dataset in the Medical Segmentation Decathlon layout.

::

    DATASET/imagesTr/<case>_0000.nii.gz   CT in HU (int16), the DICOM series as read
    DATASET/labelsTr/<case>.nii.gz        0 background, 1 liver, 2 tumor on the same grid
    DATASET/imagesTs/<case>_0000.nii.gz   test images ...
    DATASET/labelsTs/<case>.nii.gz        ... and their labels (kept apart, for evaluation)
    DATASET/dataset.json                  the Decathlon description
    DATASET/manifest.json                 per case: split, files, sha256, inputs digest

Case names are keyed pseudonyms (:mod:`deepliver.export.pseudonyms`). Nothing in DATASET names
a patient, a date or an original UID: the NIfTI files are written from bare arrays, and their
headers are checked (``descrip``, ``aux_file``, ``intent_name``, no extensions, no file name
in the gzip header) before each file takes its final name. What maps pseudonyms back to
patients is written to a separate mapping file, which must lie outside DATASET.

Re-exporting is incremental: a case whose inputs digest (fingerprint of the files on disk, the
revision and its label file's sha256, the export version) and split are those of the manifest,
and whose files are still there, is left alone; a case no longer selected is removed.
dataset.json and manifest.json are written last, and only when their content changes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from deepliver.annotation.record import STATUSES, Revision
from deepliver.annotation.store import AnnotationStore, SeriesStatus
from deepliver.errors import DeepLiverError
from deepliver.export.pseudonyms import Pseudonyms
from deepliver.io.atomic import write_atomically
from deepliver.io.checksum import file_sha256
from deepliver.io.dicom_read import read_stack
from deepliver.io.dicom_scan import ScanReport, SeriesInfo
from deepliver.io.series_identity import series_fingerprint
from deepliver.io.source_series import stack_grid
from deepliver.progress import Progress
from deepliver.volume import GridMismatchError, Volume

EXPORT_VERSION = 1
MANIFEST = "manifest.json"
DATASET_JSON = "dataset.json"
TRAINING, TEST = "training", "test"
FOLDERS = {TRAINING: ("imagesTr", "labelsTr"), TEST: ("imagesTs", "labelsTs")}
LABELS = {"0": "background", "1": "liver", "2": "tumor"}
# --status: which reader revisions a series may be exported from.
SELECTIONS = {"approved": ("approved",), "complete": ("complete", "approved"), "any": STATUSES}
DATASET_MODE = 0o644  # a dataset is made to be shared
MAPPING_MODE = 0o600  # the mapping names patients: its owner only
# NIfTI-1 header fields that hold free text, as (offset, length).
NIFTI_TEXT_FIELDS = {"db_name": (4, 18), "descrip": (148, 80), "aux_file": (228, 24)}
NIFTI_INTENT_NAME = (328, 16)
NIFTI_HEADER_BYTES = 352
GZIP_TEXT_FLAGS = 0x04 | 0x08 | 0x10  # FEXTRA, FNAME, FCOMMENT


@dataclass(frozen=True)
class ExportSettings:
    """What the user chose; the split settings are recorded in the manifest."""

    status: str = "complete"  # approved | complete | any
    test_fraction: float = 0.2
    seed: int = 0
    accept_changed: bool = False

    def __post_init__(self) -> None:
        if self.status not in SELECTIONS:
            raise DeepLiverError(f"status must be one of {', '.join(SELECTIONS)}")
        if not 0.0 <= self.test_fraction < 1.0:
            raise DeepLiverError(f"the test fraction must be in [0, 1), got {self.test_fraction}")


@dataclass(frozen=True)
class Selected:
    """A store series and the reader revision to export from it."""

    series: SeriesStatus
    revision: Revision


@dataclass
class Case:
    """One selected series as it will be in the dataset."""

    name: str
    patient: str  # the patient's pseudonym
    selected: Selected
    info: SeriesInfo
    inputs: str  # keyed digest of everything the case's files are made from
    split: str = TRAINING

    @property
    def image(self) -> str:
        return f"{FOLDERS[self.split][0]}/{self.name}_0000.nii.gz"

    @property
    def label(self) -> str:
        return f"{FOLDERS[self.split][1]}/{self.name}.nii.gz"


@dataclass
class ExportResult:
    """What an export did, by case name."""

    dataset: Path
    mapping: Path
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    training: list[str] = field(default_factory=list)
    test: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# --- choosing what to export ------------------------------------------------------------------


def select_series(store: AnnotationStore, status: str) -> tuple[list[Selected], list[str]]:
    """Every series with a reader revision of the wanted status, its newest such revision.

    Returns the selection and notes for the user (unreadable records, series whose newest
    reader revision is a draft newer than the one exported). An empty selection is an error.
    """
    wanted = SELECTIONS[status]
    listing = store.listing()
    notes = [f"left out, cannot be read: {p.message}" for p in listing.problems]
    selected = []
    for series in listing.series:
        readers = [r for r in store.revisions(series.series_key) if not r.is_model]
        matching = [r for r in readers if r.status in wanted]
        if not matching:
            continue
        chosen = matching[-1]
        if readers[-1].number != chosen.number:
            notes.append(
                f"series {series.series_key}: exporting revision {chosen.number} "
                f"({chosen.status}); its newer revision {readers[-1].number} is "
                f"{readers[-1].status}"
            )
        selected.append(Selected(series, chosen))
    if not selected:
        described = " or ".join(wanted)
        raise DeepLiverError(f"no series with status {described} in {store.root}")
    return selected, notes


def _on_disk(selected: Selected, report: ScanReport, dicom: Path) -> SeriesInfo:
    key = selected.series.series_key
    info = report.find(key)
    if info is None:
        raise DeepLiverError(f"series {key} of the annotation store is not under {dicom}")
    return info


def _fingerprint(info: SeriesInfo) -> str:
    """The fingerprint of the files now, from headers when they form a regular stack."""
    try:
        return series_fingerprint([h.sop_uid for h in info.slices], stack_grid(info))
    except DeepLiverError:  # duplicates or gaps: read it as the store's reader did
        return read_stack(info)[1].fingerprint


def plan_cases(
    selected: list[Selected],
    report: ScanReport,
    dicom: Path,
    pseudonyms: Pseudonyms,
    accept_changed: bool,
) -> tuple[list[Case], list[str]]:
    """The cases to export, checked against the DICOM files; notes for the user.

    A series whose files changed since annotation is refused, naming it, unless
    ``accept_changed``; the files changed then count as new inputs.
    """
    cases, notes = [], []
    for item in selected:
        key, identity = item.series.series_key, item.series.identity
        info = _on_disk(item, report, dicom)
        fingerprint = _fingerprint(info)
        if fingerprint != item.revision.fingerprint:
            message = (
                f"series {key}: its files in {dicom} changed since it was annotated (fingerprint "
                f"{item.revision.fingerprint[:12]}... in the store, {fingerprint[:12]}... on "
                "disk: slices added, removed or moved)"
            )
            if not accept_changed:
                raise DeepLiverError(message + "; --accept-changed exports it anyway")
            notes.append(message + "; exported anyway (accept changed)")
        patient_text = identity.patient_id or f"no Patient ID, study {identity.study_uid}"
        if not identity.patient_id:
            notes.append(f"series {key} has no Patient ID: its study counts as one patient")
        inputs = {
            "export": EXPORT_VERSION,
            "series": key,
            "fingerprint": fingerprint,
            "revision": item.revision.number,
            "labels_sha256": item.revision.seg_sha256,
        }
        cases.append(
            Case(
                name=pseudonyms.case(key),
                patient=pseudonyms.patient(patient_text),
                selected=item,
                info=info,
                inputs=pseudonyms.digest(inputs),
            )
        )
    names = [c.name for c in cases]
    if len(set(names)) != len(names):
        raise DeepLiverError("two series got the same pseudonym; export again with another key")
    return sorted(cases, key=lambda c: c.name), notes


def split_by_patient(patients: list[str], fraction: float, seed: int) -> set[str]:
    """The patients of the test set: the same patients and seed always give the same split.

    Patients are ranked by a hash of the seed and their pseudonym and the first ones make the
    test set (at least one when the fraction is not 0, never all), so adding a patient moves
    at most one other across. One patient: all in training.
    """
    unique = sorted(set(patients))
    if len(unique) < 2 or fraction <= 0:
        return set()
    count = min(len(unique) - 1, max(1, round(fraction * len(unique))))
    ranked = sorted(unique, key=lambda p: hashlib.sha256(f"{seed}:{p}".encode()).hexdigest())
    return set(ranked[:count])


# --- writing files ----------------------------------------------------------------------------


def check_nifti_header(path: Path) -> None:
    """Refuse a .nii.gz that carries text: a file name in its gzip header, NIfTI text fields
    that are not blank, or header extensions (where DICOM tags could hide)."""
    import gzip

    with open(path, "rb") as raw:
        flags = raw.read(4)[3]
    with gzip.open(path, "rb") as stream:
        header = stream.read(NIFTI_HEADER_BYTES)
    carried = [
        name
        for name, (start, length) in {**NIFTI_TEXT_FIELDS, "intent_name": NIFTI_INTENT_NAME}.items()
        if header[start : start + length].strip(b"\x00 ")
    ]
    if flags & GZIP_TEXT_FLAGS:
        carried.append("gzip file name or comment")
    if len(header) == NIFTI_HEADER_BYTES and header[348] != 0:
        carried.append("header extensions")
    if carried:
        raise DeepLiverError(f"{path}: the NIfTI file would carry text ({', '.join(carried)})")


def write_nifti(volume: Volume, path: Path) -> None:
    """A bare .nii.gz (no metadata), checked to carry no text, written atomically."""

    def write(partial: Path) -> None:
        sitk.WriteImage(volume.to_sitk(), str(partial), True)
        check_nifti_header(partial)
        os.chmod(partial, DATASET_MODE)

    try:
        write_atomically(path, write, ".nii.gz")
    except RuntimeError as error:
        raise DeepLiverError(f"{path}: cannot be written ({error})") from None


def write_json(path: Path, data: dict, mode: int = DATASET_MODE) -> bool:
    """Write ``data`` unless the file already holds exactly it; whether it was written."""
    text = json.dumps(data, indent=2) + "\n"
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False

    def write(partial: Path) -> None:
        partial.write_text(text, encoding="utf-8")
        os.chmod(partial, mode)

    write_atomically(path, write)
    return True


def _file_entry(dataset: Path, relative: str) -> dict:
    path = dataset / relative
    return {"path": relative, "sha256": file_sha256(path), "bytes": path.stat().st_size}


def write_case(case: Case, dataset: Path, store: AnnotationStore, accept_changed: bool) -> None:
    """Read the series and its revision, check they fit, and write image and label map."""
    key = case.selected.series.series_key
    volume, identity = read_stack(case.info)
    segmentation = store.load(case.selected.revision, identity, accept_changed=accept_changed)
    labels = segmentation.label_map()
    if not labels.grid.same_as(volume.grid):
        raise GridMismatchError(
            f"series {key}: its labels are not on the grid of the image: "
            f"{labels.grid.describe_difference(volume.grid)}"
        )
    unexpected = sorted(set(np.unique(labels.array).tolist()) - {0, 1, 2})
    if unexpected:
        raise DeepLiverError(
            f"series {key}: label values {unexpected} are not 0 background, 1 liver, 2 tumor"
        )
    write_nifti(volume, dataset / case.image)
    write_nifti(labels, dataset / case.label)


def _remove(dataset: Path, entry: dict) -> None:
    """Delete the files a manifest entry names, and only files in the dataset's folders."""
    for kind in ("image", "label"):
        relative = Path(entry[kind]["path"])
        if ".." in relative.parts or relative.parts[0] not in {*FOLDERS[TRAINING], *FOLDERS[TEST]}:
            raise DeepLiverError(f"{dataset / MANIFEST}: names a file outside the dataset")
        (dataset / relative).unlink(missing_ok=True)


def _unchanged(old: dict | None, case: Case, dataset: Path) -> bool:
    """Whether the previous export wrote this case from the same inputs, on the same side,
    and its files are still there."""
    if not old or old["inputs"] != case.inputs or old["split"] != case.split:
        return False
    return all(
        (dataset / old[kind]["path"]).is_file()
        and (dataset / old[kind]["path"]).stat().st_size == old[kind]["bytes"]
        for kind in ("image", "label")
    )


# --- the dataset --------------------------------------------------------------------------------


def is_inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies under it (links resolved)."""
    path, folder = Path(path).expanduser().resolve(), Path(folder).expanduser().resolve()
    return path == folder or folder in path.parents


def default_mapping(dataset: Path) -> Path:
    """``DATASET.mapping.json`` beside the dataset folder, never inside it."""
    dataset = Path(dataset).expanduser().resolve()
    return dataset.with_name(dataset.name + ".mapping.json")


def read_manifest(dataset: Path) -> dict:
    """The previous export's manifest (empty when there is none); refuses a foreign folder."""
    path = dataset / MANIFEST
    if not dataset.exists():
        return {}
    if not dataset.is_dir():
        raise DeepLiverError(f"{dataset} is a file, not a dataset folder")
    if not path.is_file():
        if any(dataset.iterdir()):
            raise DeepLiverError(
                f"{dataset} is not empty and holds no {MANIFEST}: not a DeepLiver export; "
                "choose a new folder"
            )
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        data["cases"] = {entry["case"]: entry for entry in data["cases"]}
    except (ValueError, KeyError, TypeError) as error:
        raise DeepLiverError(
            f"{path}: not a readable export manifest ({error}); remove the dataset folder "
            "and export again"
        ) from None
    return data


def dataset_description(name: str, status: str, training: list[Case], test: list[Case]) -> dict:
    """dataset.json. Images are listed without the ``_0000`` channel suffix their files have,
    as nnU-Net expects (it adds the suffix per channel)."""
    statuses = " or ".join(SELECTIONS[status])
    return {
        "name": name,
        "description": (
            f"Liver and liver tumor CT from a DeepLiver annotation store (reader revisions with "
            f"status {statuses}), de-identified: case names are keyed pseudonyms. Images are "
            "<case>_0000.nii.gz (HU). The labels of the test images are in labelsTs."
        ),
        "reference": "DeepLiver annotation store export",
        "licence": "see your institution",
        "release": f"deepliver export {EXPORT_VERSION}",
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": dict(LABELS),
        "numTraining": len(training),
        "numTest": len(test),
        "training": [
            {"image": f"./{FOLDERS[TRAINING][0]}/{c.name}.nii.gz", "label": f"./{c.label}"}
            for c in training
        ],
        "test": [f"./{FOLDERS[TEST][0]}/{c.name}.nii.gz" for c in test],
    }


def _manifest_entry(case: Case, pseudonyms: Pseudonyms, dataset: Path) -> dict:
    revision = case.selected.revision
    return {
        "case": case.name,
        "patient": case.patient,
        "split": case.split,
        "record": pseudonyms.record(case.selected.series.series_key, revision.number),
        "revision": revision.number,
        "status": revision.status,
        "image": _file_entry(dataset, case.image),
        "label": _file_entry(dataset, case.label),
        "inputs": case.inputs,
    }


def _mapping(dataset: Path, cases: list[Case], pseudonyms: Pseudonyms) -> dict:
    entries = {}
    for case in cases:
        identity, revision = case.selected.series.identity, case.selected.revision
        entries[case.name.removeprefix("liver_")] = {
            "case": case.name,
            "patient_id": identity.patient_id,
            "patient_pseudonym": case.patient,
            "study_uid": identity.study_uid,
            "series_uid": identity.series_uid,
            "series_key": case.selected.series.series_key,
            "revision": revision.number,
            "record": pseudonyms.record(case.selected.series.series_key, revision.number),
        }
    return {
        "warning": "this file names patients: keep it apart from the dataset, never share it",
        "dataset": str(dataset),
        "pseudonyms": entries,
    }


def export_dataset(
    store: AnnotationStore,
    selected: list[Selected],
    report: ScanReport,
    dicom: Path,
    dataset: Path,
    mapping: Path,
    pseudonyms: Pseudonyms,
    settings: ExportSettings,
    log: Callable[[str], None] = lambda text: None,
    progress: Progress | None = None,
) -> ExportResult:
    """Write (or bring up to date) the dataset of the ``selected`` series.

    ``report`` is the scan of ``dicom``, where each series is found by its key. Every check
    that needs no pixels runs before anything is written.
    """
    dataset = Path(dataset).expanduser().resolve()
    if is_inside(mapping, dataset):
        raise DeepLiverError(f"{mapping}: the mapping names patients; write it outside {dataset}")
    previous = read_manifest(dataset)
    cases, notes = plan_cases(selected, report, dicom, pseudonyms, settings.accept_changed)
    notes += assign_splits(cases, settings)
    key_check = pseudonyms.of("deepliver export key check")
    if previous and previous.get("key_check") != key_check:
        notes.append("the key differs from the previous export's: every case gets a new name")

    result = ExportResult(dataset, Path(mapping).expanduser().resolve(), notes=notes)
    entries = _update_cases(
        cases, previous.get("cases", {}), store, pseudonyms, settings, result, log, progress
    )

    training = [c for c in cases if c.split == TRAINING]
    test = [c for c in cases if c.split == TEST]
    result.training, result.test = [c.name for c in training], [c.name for c in test]
    if progress:
        progress("writing dataset.json", 1.0)
    write_json(result.mapping, _mapping(dataset, cases, pseudonyms), MAPPING_MODE)
    description = dataset_description(dataset.name, settings.status, training, test)
    write_json(dataset / DATASET_JSON, description)
    write_json(dataset / MANIFEST, _manifest(key_check, settings, entries))
    return result


def assign_splits(cases: list[Case], settings: ExportSettings) -> list[str]:
    """Put each case on its patient's side of the split; notes for the user."""
    patients = [c.patient for c in cases]
    test_patients = split_by_patient(patients, settings.test_fraction, settings.seed)
    for case in cases:
        case.split = TEST if case.patient in test_patients else TRAINING
    return ["one patient only: every case goes to training"] if len(set(patients)) < 2 else []


def _update_cases(
    cases: list[Case],
    old_cases: dict,
    store: AnnotationStore,
    pseudonyms: Pseudonyms,
    settings: ExportSettings,
    result: ExportResult,
    log: Callable[[str], None],
    progress: Progress | None,
) -> list[dict]:
    """Write new and changed cases, keep unchanged ones, remove those no longer selected;
    the manifest entries of the cases."""
    dataset = result.dataset
    entries = []
    for number, case in enumerate(cases):
        if progress:
            progress("writing cases", number / len(cases))
        old = old_cases.get(case.name)
        if _unchanged(old, case, dataset):
            result.unchanged.append(case.name)
            entries.append(old)
            log(f"{case.name}: unchanged ({case.split})")
            continue
        write_case(case, dataset, store, settings.accept_changed)
        if old and (old["image"]["path"], old["label"]["path"]) != (case.image, case.label):
            _remove(dataset, old)  # it moved to the other side of the split
        entries.append(_manifest_entry(case, pseudonyms, dataset))
        result.written.append(case.name)
        log(f"{case.name}: written ({case.split}, revision {case.selected.revision.number})")
    for name in sorted(set(old_cases) - {c.name for c in cases}):
        _remove(dataset, old_cases[name])
        result.removed.append(name)
        log(f"{name}: removed (no longer selected)")
    _remove_empty_folders(dataset)
    return entries


def _manifest(key_check: str, settings: ExportSettings, entries: list[dict]) -> dict:
    return {
        "format": "deepliver export",
        "version": EXPORT_VERSION,
        "key_check": key_check,  # tells a later export whether the key changed
        "settings": {
            "status": settings.status,
            "test_fraction": settings.test_fraction,
            "seed": settings.seed,
        },
        "cases": entries,
    }


def _remove_empty_folders(dataset: Path) -> None:
    for folder in (*FOLDERS[TRAINING], *FOLDERS[TEST]):
        path = dataset / folder
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
