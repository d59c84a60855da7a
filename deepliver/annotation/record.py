"""The JSON records of the annotation store: a series (``series.json``) and a revision (sidecar).

Both are checked against their JSON Schema (``deepliver/resources/*.schema.json``) every time
they are written or read. Each record carries ``schema_version``; a revision written under an
older version is upgraded on reading by the functions in :data:`REVISION_MIGRATIONS`, then
checked against the current schema, so old stores keep loading. A record from a newer version
than this DeepLiver knows is refused with a message saying so.

Revision schema versions:

1. the first layout: no lesion ``boxes``, no ``comment``, no ``source`` (manual implied);
2. (current) ``boxes``, ``comment`` and ``source`` always present (empty allowed).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from pathlib import Path

import jsonschema
import numpy as np

from deepliver.annotation.segmentation import Segmentation
from deepliver.errors import DeepLiverError
from deepliver.io.series_identity import SeriesIdentity
from deepliver.volume import Grid

REVISION_SCHEMA_VERSION = 2
SERIES_SCHEMA_VERSION = 1

STATUSES = ("draft", "complete", "approved")
MANUAL = "manual"
MODEL = "model"


class RecordError(DeepLiverError):
    """A store record that cannot be used: unreadable, not JSON, or not matching its schema."""


# --- schemas -----------------------------------------------------------------------------


@cache
def schema(name: str) -> dict:
    """The JSON Schema ``deepliver/resources/<name>.schema.json`` (``revision``, ``series``)."""
    text = (resources.files("deepliver") / "resources" / f"{name}.schema.json").read_text("utf-8")
    return json.loads(text)


@cache
def _validator(name: str) -> jsonschema.protocols.Validator:
    document = schema(name)
    cls = jsonschema.validators.validator_for(document)
    cls.check_schema(document)
    return cls(document)


def validate(name: str, data: dict, where: str) -> None:
    """Raise :class:`RecordError` naming ``where`` and the first bad field."""
    error = jsonschema.exceptions.best_match(_validator(name).iter_errors(data))
    if error is not None:
        field_path = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        message = error.message if len(error.message) <= 200 else error.message[:197] + "..."
        raise RecordError(f"{where}: does not match the {name} schema at {field_path}: {message}")


# --- small parts of a revision -------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """Where a revision came from: a reader (``manual``) or a model with its name and version."""

    kind: str = MANUAL
    name: str = ""
    version: str = ""

    def __post_init__(self) -> None:
        if self.kind not in (MANUAL, MODEL):
            raise DeepLiverError(f"source kind must be 'manual' or 'model', got {self.kind!r}")
        if self.kind == MODEL and not (self.name and self.version):
            raise DeepLiverError("a model source needs the model's name and version")

    @property
    def is_model(self) -> bool:
        return self.kind == MODEL

    def to_dict(self) -> dict:
        if self.kind == MANUAL:
            return {"kind": MANUAL}
        return {"kind": MODEL, "name": self.name, "version": self.version}

    @classmethod
    def from_dict(cls, data: dict | None) -> Source:
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise DeepLiverError(f"a source is a dict like {{'kind': 'manual'}}, got {data!r}")
        return cls(
            str(data.get("kind", "")), str(data.get("name", "")), str(data.get("version", ""))
        )

    def describe(self) -> str:
        return "manual" if self.kind == MANUAL else f"model {self.name} {self.version}"


@dataclass(frozen=True)
class LesionBox:
    """An axis-aligned box around one segment, corners in physical LPS mm."""

    segment: str
    min: tuple[float, float, float]
    max: tuple[float, float, float]

    def __post_init__(self) -> None:
        low = tuple(float(v) for v in np.asarray(self.min, dtype=np.float64).reshape(-1))
        high = tuple(float(v) for v in np.asarray(self.max, dtype=np.float64).reshape(-1))
        if len(low) != 3 or len(high) != 3:
            raise DeepLiverError(f"box of {self.segment!r}: min and max need 3 values each")
        if not all(np.isfinite(low + high)) or any(a > b for a, b in zip(low, high, strict=True)):
            raise DeepLiverError(f"box of {self.segment!r}: min {low} must not exceed max {high}")
        object.__setattr__(self, "min", low)
        object.__setattr__(self, "max", high)

    def to_dict(self) -> dict:
        return {"segment": self.segment, "min": list(self.min), "max": list(self.max)}

    @classmethod
    def from_dict(cls, data: dict) -> LesionBox:
        return cls(str(data["segment"]), tuple(data["min"]), tuple(data["max"]))


@dataclass(frozen=True)
class SegmentRecord:
    """What the sidecar says about one segment of the label file."""

    name: str
    structure: str
    label: int
    color: tuple[int, int, int]

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "structure": self.structure,
            "label": self.label,
            "color": list(self.color),
        }

    @classmethod
    def from_dict(cls, data: dict) -> SegmentRecord:
        return cls(
            str(data["name"]),
            str(data["structure"]),
            int(data["label"]),
            tuple(int(c) for c in data["color"]),
        )


def segment_records(segmentation: Segmentation) -> tuple[SegmentRecord, ...]:
    return tuple(
        SegmentRecord(s.name, s.structure.name, s.structure.label, tuple(s.display_color))
        for s in segmentation.segments
    )


def utc_now() -> str:
    """Now, UTC, ISO 8601 with microseconds and a Z: sorts as text in time order."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- a revision ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Revision:
    """One saved annotation of a series: the sidecar's content, and where it lies."""

    number: int
    created: str
    reader: str
    status: str
    source: Source
    comment: str
    study_uid: str
    series_key: str
    fingerprint: str  # of the series the labels were drawn on
    segments: tuple[SegmentRecord, ...]
    boxes: tuple[LesionBox, ...]
    seg_file: str
    seg_sha256: str
    sidecar: Path | None = field(default=None, compare=False)  # set when read from a store
    schema_version_read: int = field(default=REVISION_SCHEMA_VERSION, compare=False)

    @property
    def seg_path(self) -> Path | None:
        return None if self.sidecar is None else self.sidecar.with_name(self.seg_file)

    @property
    def is_model(self) -> bool:
        return self.source.is_model

    def to_dict(self) -> dict:
        return {
            "schema_version": REVISION_SCHEMA_VERSION,
            "number": self.number,
            "created": self.created,
            "reader": self.reader,
            "status": self.status,
            "source": self.source.to_dict(),
            "comment": self.comment,
            "series": {
                "study_uid": self.study_uid,
                "series_key": self.series_key,
                "fingerprint": self.fingerprint,
            },
            "segments": [s.to_dict() for s in self.segments],
            "boxes": [b.to_dict() for b in self.boxes],
            "seg_file": self.seg_file,
            "seg_sha256": self.seg_sha256,
        }

    def to_json(self) -> str:
        data = self.to_dict()
        validate("revision", data, f"revision {self.number} of series {self.series_key}")
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict, where: str, sidecar: Path | None = None) -> Revision:
        """A revision from its JSON (any known schema version); ``where`` names it in errors."""
        version_read = data.get("schema_version") if isinstance(data, dict) else None
        data = migrate_revision(data, where)
        validate("revision", data, where)
        return cls(
            number=data["number"],
            created=data["created"],
            reader=data["reader"],
            status=data["status"],
            source=Source.from_dict(data["source"]),
            comment=data["comment"],
            study_uid=data["series"]["study_uid"],
            series_key=data["series"]["series_key"],
            fingerprint=data["series"]["fingerprint"],
            segments=tuple(SegmentRecord.from_dict(s) for s in data["segments"]),
            boxes=tuple(LesionBox.from_dict(b) for b in data["boxes"]),
            seg_file=data["seg_file"],
            seg_sha256=data["seg_sha256"],
            sidecar=sidecar,
            schema_version_read=version_read,
        )

    @classmethod
    def read(cls, path: Path) -> Revision:
        """The sidecar at ``path``; :class:`RecordError` naming the file when it is unusable."""
        return cls.from_dict(read_json(path), str(path), sidecar=Path(path))


def _revision_v1_to_v2(data: dict) -> dict:
    upgraded = dict(data)
    upgraded.setdefault("source", {"kind": MANUAL})
    upgraded.setdefault("comment", "")
    upgraded.setdefault("boxes", [])
    upgraded["schema_version"] = 2
    return upgraded


# schema version -> function turning a record of that version into one of the next version.
REVISION_MIGRATIONS: dict[int, Callable[[dict], dict]] = {1: _revision_v1_to_v2}


def migrate_revision(data: dict, where: str) -> dict:
    """``data`` upgraded, step by step, to :data:`REVISION_SCHEMA_VERSION`."""
    if not isinstance(data, dict):
        raise RecordError(f"{where}: a revision record is a JSON object, got {type(data).__name__}")
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise RecordError(f"{where}: schema_version must be a positive integer, got {version!r}")
    if version > REVISION_SCHEMA_VERSION:
        raise RecordError(
            f"{where}: written with revision schema version {version}; this DeepLiver reads up "
            f"to version {REVISION_SCHEMA_VERSION} (update DeepLiver)"
        )
    while version < REVISION_SCHEMA_VERSION:
        data = REVISION_MIGRATIONS[version](data)
        version = data["schema_version"]
    return data


# --- a series ------------------------------------------------------------------------------


def geometry_dict(grid: Grid) -> dict:
    return {
        "size": [int(n) for n in grid.size_ijk],
        "origin": [float(v) for v in grid.origin],
        "spacing": [float(v) for v in grid.spacing],
        "direction": [float(v) for v in grid.direction.reshape(-1)],
    }


def grid_from_geometry(data: dict) -> Grid:
    size = data["size"]
    return Grid((size[2], size[1], size[0]), data["origin"], data["spacing"], data["direction"])


@dataclass(frozen=True)
class SeriesRecord:
    """``series.json``: a series' DICOM identity and grid, under the scan's series key."""

    series_key: str
    identity: SeriesIdentity
    grid: Grid

    def to_dict(self) -> dict:
        return {
            "schema_version": SERIES_SCHEMA_VERSION,
            "series_key": self.series_key,
            "identity": self.identity.to_dict(),
            "geometry": geometry_dict(self.grid),
        }

    def to_json(self) -> str:
        data = self.to_dict()
        validate("series", data, f"series {self.series_key}")
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict, where: str) -> SeriesRecord:
        if isinstance(data, dict):
            version = data.get("schema_version")
            if isinstance(version, int) and version > SERIES_SCHEMA_VERSION:
                raise RecordError(
                    f"{where}: written with series schema version {version}; this DeepLiver "
                    f"reads up to version {SERIES_SCHEMA_VERSION} (update DeepLiver)"
                )
        validate("series", data, where)
        try:
            grid = grid_from_geometry(data["geometry"])
        except ValueError as error:
            raise RecordError(f"{where}: geometry is not a valid grid: {error}") from None
        return cls(data["series_key"], SeriesIdentity.from_dict(data["identity"]), grid)

    @classmethod
    def read(cls, path: Path) -> SeriesRecord:
        return cls.from_dict(read_json(path), str(path))


def read_json(path: Path) -> dict:
    """The JSON in ``path``; :class:`RecordError` naming the file when it cannot be parsed."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise RecordError(f"{path}: not UTF-8 text ({error.reason})") from None
    except OSError as error:
        raise RecordError(f"{path}: cannot be read ({error.strerror or error})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise RecordError(
            f"{path}: not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})"
        ) from None
