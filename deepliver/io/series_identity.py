"""Which DICOM series a volume came from, so annotations can never land on the wrong one.

The fingerprint hashes the ordered SOP Instance UIDs together with the grid, rounded so that
re-reading the same files (in any order, under any file names) gives the same hex string, while
a missing slice, another slice order or another geometry gives a different one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

import numpy as np

from deepliver.volume import Grid

# Rounding applied before hashing: positions and spacings in mm, direction cosines unitless.
FINGERPRINT_MM_DECIMALS = 3
FINGERPRINT_DIRECTION_DECIMALS = 6


def _rounded(values, decimals: int) -> list[str]:
    # Adding 0.0 turns -0.0 into 0.0 so both hash alike; fixed-point text avoids float repr noise.
    return [f"{round(float(v), decimals) + 0.0:.{decimals}f}" for v in np.ravel(values)]


def missing_uids(study_uid: str, series_uid: str, sop_uids) -> list[str]:
    """The names of the UIDs a series lacks. Without them its identity rests on geometry, and a
    DICOM SEG cannot reference its slices."""
    present = (
        ("Study Instance UID", bool(study_uid)),
        ("Series Instance UID", bool(series_uid)),
        ("SOP Instance UIDs", all(sop_uids)),
    )
    return [name for name, ok in present if not ok]


def series_fingerprint(sop_uids: list[str] | tuple[str, ...], grid: Grid) -> str:
    """sha256 hex of the SOP UIDs in slice order and the rounded grid geometry."""
    payload = {
        "sop_uids": list(sop_uids),
        "shape": list(grid.shape),
        "origin": _rounded(grid.origin, FINGERPRINT_MM_DECIMALS),
        "spacing": _rounded(grid.spacing, FINGERPRINT_MM_DECIMALS),
        "direction": _rounded(grid.direction, FINGERPRINT_DIRECTION_DECIMALS),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class SeriesIdentity:
    """The DICOM identity of a series plus a fingerprint of its slices and grid."""

    patient_id: str
    study_uid: str
    series_uid: str
    modality: str
    description: str
    sop_uids: tuple[str, ...] = field(default_factory=tuple)
    fingerprint: str = ""

    @classmethod
    def build(
        cls,
        *,
        patient_id: str,
        study_uid: str,
        series_uid: str,
        modality: str,
        description: str,
        sop_uids: list[str] | tuple[str, ...],
        grid: Grid,
    ) -> SeriesIdentity:
        """An identity whose fingerprint is computed from ``sop_uids`` and ``grid``."""
        return cls(
            patient_id=patient_id,
            study_uid=study_uid,
            series_uid=series_uid,
            modality=modality,
            description=description,
            sop_uids=tuple(sop_uids),
            fingerprint=series_fingerprint(sop_uids, grid),
        )

    @property
    def missing_uids(self) -> list[str]:
        return missing_uids(self.study_uid, self.series_uid, self.sop_uids)

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (lists instead of tuples)."""
        data = asdict(self)
        data["sop_uids"] = list(self.sop_uids)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> SeriesIdentity:
        return cls(
            patient_id=str(data["patient_id"]),
            study_uid=str(data["study_uid"]),
            series_uid=str(data["series_uid"]),
            modality=str(data["modality"]),
            description=str(data["description"]),
            sop_uids=tuple(str(uid) for uid in data["sop_uids"]),
            fingerprint=str(data["fingerprint"]),
        )
