"""Everything one segmentation run leaves in its output folder, written in one call.

``labels.dcm`` (a DICOM SEG over the source slices, on request for DICOM input) comes first, as
highdicom may refuse a source: then nothing is written and a former run's files stay together.
Then ``labels.nii.gz`` and ``labels.seg.nrrd`` on the input's exact grid, the lesion table, the
overview PNG and, last, ``summary.json`` with the time this writing took. Every file is written
atomically, so a reader never sees half a file.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import deepliver
from deepliver.annotation.segmentation import Segment, Segmentation
from deepliver.annotation.structures import LIVER
from deepliver.errors import DeepLiverError
from deepliver.inference.lesions import lesion_table, summary, write_lesion_table, write_summary
from deepliver.inference.overview import write_overview
from deepliver.io.image_files import write_image
from deepliver.io.seg_nrrd import write_seg_nrrd
from deepliver.io.series_identity import SeriesIdentity
from deepliver.io.source_series import Source
from deepliver.volume import Volume

LABELS_NIFTI = "labels.nii.gz"
LABELS_SEG_NRRD = "labels.seg.nrrd"
LABELS_DICOM_SEG = "labels.dcm"
OVERVIEW_PNG = "overview.png"
DICOM_LONG_STRING = 64  # the most characters an LO element (algorithm name, version) holds


def algorithm_of(models) -> tuple[str, str]:
    """(name, version) for the DICOM SEG's algorithm identification: the models' names and
    versions joined with '+', or DeepLiver's own when no model is named."""
    models = list(models)
    if not models:
        return "DeepLiver", deepliver.__version__
    name = "+".join(str(m["name"]) for m in models)
    version = "+".join(str(m.get("version", "")) for m in models)
    return name[:DICOM_LONG_STRING], (version or deepliver.__version__)[:DICOM_LONG_STRING]


def write_outputs(
    ct: Volume,
    labels: Volume,
    folder: Path,
    *,
    identity: SeriesIdentity | None = None,
    dicom_source: Source | None = None,
    dicom_seg: bool = False,
    models=(),
    timings: dict[str, float] | None = None,
    device: str | None = None,
    tumor_probability: Volume | None = None,
) -> dict[str, Path]:
    """Write the run's files under ``folder``; returns their paths by kind.

    ``labels`` must be on ``ct``'s grid (0 background, 1 liver, 2 tumor). ``dicom_seg`` needs
    ``dicom_source`` (the series' folder or files); ``identity`` then picks that series and checks
    its slices. ``models`` are dicts with at least a name (and a version); ``timings`` the
    seconds per stage so far, and ``device`` where the models ran (timings mean little without
    it). ``tumor_probability`` (the cascade's, uint8 on ``ct``'s grid) gives each lesion its
    mean probability in the lesion table. A result without liver still gets every file except
    the DICOM SEG, which cannot hold zero segments (the summary says so); its ``.seg.nrrd``
    holds one empty Liver segment to draw into.
    """
    start = time.perf_counter()
    ct.require_same_grid(labels)
    if dicom_seg and dicom_source is None:
        raise DeepLiverError("a DICOM SEG needs the source DICOM series (dicom_source)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    labels = labels.with_array(np.asarray(labels.array, dtype=np.uint8))
    models = list(models)
    paths: dict[str, Path] = {}
    notes: list[str] = []

    segmentation = Segmentation.from_label_map(labels)
    if dicom_seg:  # first: if the source cannot take one, a former run's files stay as they were
        if segmentation.segments:
            paths["dicom_seg"] = _write_dicom_seg(
                segmentation, dicom_source, folder / LABELS_DICOM_SEG, identity, models
            )
        else:
            notes.append("no liver or tumor found: no DICOM SEG written (it needs a segment)")
    paths["labels_nifti"] = write_image(labels, folder / LABELS_NIFTI)
    # With nothing found, an empty Liver segment keeps the file a segmentation to draw into.
    editable = segmentation if segmentation.segments else _empty_liver(labels)
    paths["labels_seg_nrrd"] = write_seg_nrrd(editable, folder / LABELS_SEG_NRRD)
    lesions = lesion_table(labels, ct, tumor_probability)
    paths["lesions_csv"], paths["lesions_json"] = write_lesion_table(lesions, folder)
    paths["overview"] = write_overview(ct, labels, folder / OVERVIEW_PNG)

    stages = dict(timings or {})
    stages["write_outputs"] = time.perf_counter() - start
    data = summary(labels, ct, lesions, models, stages)
    if device is not None:
        data["device"] = device
    if identity is not None:
        data["series"] = {"series_uid": identity.series_uid, "fingerprint": identity.fingerprint}
    if not segmentation.segments:
        notes.insert(0, "no liver found")
    data["notes"] = notes
    data["files"] = {kind: path.name for kind, path in paths.items()}
    paths["summary"] = write_summary(data, folder)
    return paths


def _empty_liver(labels: Volume) -> Segmentation:
    masks = np.zeros((1, *labels.shape), dtype=bool)
    return Segmentation(labels.grid, (Segment(LIVER.name, LIVER),), masks)


def _write_dicom_seg(
    segmentation: Segmentation,
    source: Source,
    path: Path,
    identity: SeriesIdentity | None,
    models: list[dict],
) -> Path:
    from deepliver.io.dicom_seg import write_dicom_seg  # highdicom loads slowly: only when asked

    return write_dicom_seg(
        segmentation,
        source,
        path,
        series_identity=identity,
        algorithm=algorithm_of(models),
        series_description="DeepLiver liver/tumor pre-segmentation",
    )
