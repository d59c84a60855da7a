"""A phantom on disk: the DICOM CT series, the CT and labels as NIfTI, and a JSON record."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from deepliver.io.dicom_write import write_ct_series
from deepliver.io.image_files import write_image
from deepliver.io.series_identity import SeriesIdentity
from deepliver.progress import Progress, within


@dataclass(frozen=True)
class PhantomFiles:
    dicom: Path
    ct: Path
    labels: Path
    record: Path
    identity: SeriesIdentity


def write_phantom(phantom, out: Path, progress: Progress | None = None) -> PhantomFiles:
    """Write ``phantom`` (from :func:`make_phantom`) under ``out``; UIDs follow its seed."""
    out = Path(out)
    spec = phantom.spec
    identity = write_ct_series(
        phantom.ct,
        out / "dicom",
        patient_id=f"PHANTOM-{spec.seed}",
        description=f"DeepLiver phantom seed {spec.seed} ({phantom.phase})",
        uid_entropy=f"deepliver-phantom-{spec.seed}-{_spec_text(spec)}",
        progress=within(progress, 0.0, 0.5),
    )
    if progress:
        progress("writing NIfTI", 0.5)
    ct = write_image(phantom.ct, out / "ct.nii.gz")
    if progress:
        progress("writing NIfTI", 0.8)
    labels = write_image(phantom.labels, out / "labels.nii.gz")
    record = out / "phantom.json"
    record.write_text(json.dumps(_record(phantom, identity), indent=2) + "\n")
    return PhantomFiles(out / "dicom", ct, labels, record, identity)


def _spec_text(spec) -> str:
    return json.dumps(asdict(spec), sort_keys=True, default=str)


def _record(phantom, identity: SeriesIdentity) -> dict:
    counts = np.bincount(phantom.labels.array.ravel(), minlength=3)
    voxel_ml = float(np.prod(phantom.labels.spacing)) / 1000.0
    return {
        "spec": asdict(phantom.spec),
        "phase": phantom.phase,
        "labels": {"0": "background", "1": "liver", "2": "tumor"},
        "liver_ml": round(float(counts[1] + counts[2]) * voxel_ml, 1),
        "tumor_ml": round(float(counts[2]) * voxel_ml, 1),
        "tumors": [_plain(asdict(t)) for t in phantom.tumors],
        "shadow": asdict(phantom.shadow) if phantom.shadow else None,
        "series": identity.to_dict(),
    }


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
