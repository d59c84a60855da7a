"""Find the label maps under a prediction or truth path and pair them case by case.

A path is one label file, a folder of them (searched recursively), or an annotation store.
Files: NIfTI or NRRD label maps (0 background, 1 liver, 2 tumor), Slicer ``.seg.nrrd`` and DICOM
SEG. A file's case name is its path below the folder without the suffix, with a trailing
``labels`` dropped, so ``truth/case07.nii.gz`` pairs with ``pred/case07/labels.nii.gz`` (what
``deepliver segment -o pred/case07`` writes). Files named ``ct.*`` are CT images, kept for the
overlays, not label maps; DICOM files that are not SEG are passed over. Cases are paired by name,
then by Series Instance UID (DICOM SEG, store); the rest are listed as unmatched. Two files
given directly are one case.
In a store, the truth is each series' newest reader revision; the prediction its newest model
revision.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from deepliver.annotation.structures import checked_labels
from deepliver.errors import DeepLiverError
from deepliver.volume import Volume

# Preferred first when one case has the same labels in several formats (deepliver segment
# writes .nii.gz, .seg.nrrd and .dcm).
LABEL_SUFFIXES = (".nii.gz", ".nii", ".seg.nrrd", ".nrrd", ".dcm")
CT_STEM = "ct"
GENERIC_STEMS = ("labels", "label", "segmentation")
ROLES = ("prediction", "truth")


@dataclass(frozen=True)
class LabelSource:
    """One case's labels, read only when needed (a folder may hold hundreds)."""

    name: str
    where: str  # the file, or the store revision, for messages
    read: Callable[[], Volume] = field(repr=False)
    series_uid: str | None = None
    ct_path: Path | None = None


@dataclass
class Pairing:
    pairs: list[tuple[LabelSource, LabelSource]]  # (prediction, truth), by case name
    prediction_only: list[str]
    truth_only: list[str]


def find_labels(path: Path, role: str) -> list[LabelSource]:
    """Every case's labels under ``path`` (``role``: "prediction" or "truth")."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    path = Path(path)
    if not path.exists():
        raise DeepLiverError(f"{path}: no such file or folder")
    if path.is_file():
        source = _file_source(path, path.parent)
        if source is None:
            raise DeepLiverError(f"{path}: not a label map, .seg.nrrd or DICOM SEG")
        return [source]
    if is_store(path):
        return _store_sources(path, role)
    files = sorted(
        (p for p in path.rglob("*") if p.is_file() and _suffix(p)),
        key=lambda p: LABEL_SUFFIXES.index(_suffix(p)),
    )
    sources: dict[str, LabelSource] = {}
    for file in files:
        source = _file_source(file, path)
        if source is not None:
            sources.setdefault(source.name, source)  # the preferred format wins
    if not sources:
        raise DeepLiverError(
            f"{path}: no label maps found (NIfTI, NRRD, .seg.nrrd or DICOM SEG files)"
        )
    return sorted(sources.values(), key=lambda s: s.name)


def pair_paths(prediction_path: Path, truth_path: Path) -> Pairing:
    """The cases under the two paths, paired (:func:`pair`). Two files are one case whatever
    their names: that is what a user comparing two files means."""
    predictions = find_labels(prediction_path, "prediction")
    truths = find_labels(truth_path, "truth")
    if Path(prediction_path).is_file() and Path(truth_path).is_file():
        return Pairing([(predictions[0], truths[0])], [], [])
    return pair(predictions, truths)


def pair(predictions: list[LabelSource], truths: list[LabelSource]) -> Pairing:
    """Pairs by case name, then by Series Instance UID; every leftover is listed."""
    truth_by_name = {t.name: t for t in truths}
    pairs, left = [], []
    for prediction in predictions:
        truth = truth_by_name.pop(prediction.name, None)
        if truth is None:
            left.append(prediction)
        else:
            pairs.append((prediction, truth))
    truth_by_uid = {t.series_uid: t for t in truth_by_name.values() if t.series_uid}
    prediction_only = []
    for prediction in left:
        truth = truth_by_uid.pop(prediction.series_uid, None) if prediction.series_uid else None
        if truth is None:
            prediction_only.append(prediction.name)
        else:
            truth_by_name.pop(truth.name)
            pairs.append((prediction, truth))
    pairs.sort(key=lambda p: p[1].name)
    return Pairing(pairs, sorted(prediction_only), sorted(truth_by_name))


def is_store(folder: Path) -> bool:
    """An annotation store holds <study>/<series>/series.json."""
    from deepliver.annotation.store import SERIES_FILE

    return any(folder.glob(f"*/*/{SERIES_FILE}"))


# --- files --------------------------------------------------------------------------------


def _suffix(path: Path) -> str | None:
    name = path.name.lower()
    return next((s for s in LABEL_SUFFIXES if name.endswith(s)), None)


def _case_name(path: Path, root: Path, suffix: str) -> str:
    relative = path.relative_to(root).as_posix()
    stem = relative[: len(relative) - len(suffix)]
    parts = stem.split("/")
    if len(parts) > 1 and parts[-1].lower() in GENERIC_STEMS:
        parts = parts[:-1]
    return "/".join(parts)


def _file_source(path: Path, root: Path) -> LabelSource | None:
    suffix = _suffix(path)
    if suffix is None or path.name.startswith("."):
        return None
    if path.name.lower()[: -len(suffix)] == CT_STEM:
        return None
    series_uid = None
    if suffix == ".dcm":
        series_uid = _seg_series_uid(path)
        if series_uid is None:
            return None  # a CT slice or another DICOM object, not a SEG
    ct = next((p for p in sorted(path.parent.glob(f"{CT_STEM}.*")) if _suffix(p)), None)
    return LabelSource(
        name=_case_name(path, root, suffix),
        where=str(path),
        read=lambda: checked_labels(_read_label_file(path), str(path)),
        series_uid=series_uid,
        ct_path=ct,
    )


def _read_label_file(path: Path) -> Volume:
    from deepliver.io.image_files import is_image_file, read_image
    from deepliver.io.load import load_segmentation

    if is_image_file(path) and not path.name.lower().endswith(".seg.nrrd"):
        return read_image(path)
    return load_segmentation(path).label_map()


def _seg_series_uid(path: Path) -> str | None:
    """The Series Instance UID a DICOM SEG refers to; None for any other file."""
    import pydicom

    try:
        header = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - not DICOM, or broken: not a SEG we can use
        return None
    if header.get("Modality") != "SEG":
        return None
    references = header.get("ReferencedSeriesSequence") or []
    uid = str(references[0].get("SeriesInstanceUID", "")) if references else ""
    return uid or None


# --- stores -------------------------------------------------------------------------------


def _store_sources(root: Path, role: str) -> list[LabelSource]:
    from deepliver.annotation.record import MANUAL, MODEL
    from deepliver.annotation.store import AnnotationStore

    store = AnnotationStore(root)
    sources = []
    for status in store.series():
        revision = store.latest(status.series_key, MANUAL if role == "truth" else MODEL)
        if revision is None:
            continue  # listed as unmatched by its absence: the caller sees the other side's name
        where = f"{root} series {status.series_key} revision {revision.number}"
        sources.append(
            LabelSource(
                name=status.series_key,
                where=where,
                read=lambda r=revision, w=where: checked_labels(store.load(r).label_map(), w),
                series_uid=status.identity.series_uid or None,
            )
        )
    if not sources:
        kind = "reader" if role == "truth" else "model"
        raise DeepLiverError(f"annotation store {root}: no series has a {kind} revision")
    return sources
