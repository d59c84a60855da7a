"""The review worklist: the series of a DICOM database joined with their annotation status.

Slicer's DICOM database (or any other source) fills one :class:`DicomSeriesRow` per series;
:func:`build_worklist` joins the rows with the store's statuses into :class:`WorklistEntry`
objects in a stable order (patient, study date, study, series number, series UID).
:class:`WorklistFilter` narrows the list (CT only, not yet done, search words) and
:func:`next_to_do` picks the series to open after the current one, wrapping around and skipping
series that are done (complete or approved).

Nothing here reads files or knows Slicer: the statuses are any objects with a series UID and a
status (the store's ``SeriesStatus``), or a plain ``{series_uid: status}`` mapping.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from deepliver.errors import DeepLiverError

NOT_STARTED = "not started"
DRAFT = "draft"
COMPLETE = "complete"
APPROVED = "approved"
STATUSES = (NOT_STARTED, DRAFT, COMPLETE, APPROVED)
DONE = frozenset({COMPLETE, APPROVED})

# The DICOM attributes a row is made of, as "gggg,eeee" tags (the form ctkDICOMDatabase.fileValue
# takes), read from one file of each series.
TAGS = {
    "patient_name": "0010,0010",
    "patient_id": "0010,0020",
    "study_uid": "0020,000D",
    "study_date": "0008,0020",
    "study_description": "0008,1030",
    "series_uid": "0020,000E",
    "series_number": "0020,0011",
    "modality": "0008,0060",
    "series_description": "0008,103E",
}

# Columns of the worklist table, in order (see WorklistEntry.cells).
COLUMNS = ("Patient", "Study date", "Series", "Modality", "Files", "Status", "Reader")


@dataclass(frozen=True)
class DicomSeriesRow:
    """One series as a DICOM database lists it."""

    series_uid: str
    patient_name: str = ""
    patient_id: str = ""
    study_uid: str = ""
    study_date: str = ""  # DICOM DA, YYYYMMDD
    study_description: str = ""
    series_number: str = ""
    modality: str = ""
    series_description: str = ""
    file_count: int = 0

    @property
    def series_number_value(self) -> int | None:
        try:
            return int(str(self.series_number).strip())
        except ValueError:
            return None

    @property
    def patient_text(self) -> str:
        name = person_name(self.patient_name)
        if name and self.patient_id and self.patient_id != name:
            return f"{name} ({self.patient_id})"
        return name or self.patient_id

    @property
    def series_text(self) -> str:
        number = self.series_number_value
        prefix = f"{number}: " if number is not None else ""
        return prefix + (self.series_description or self.series_uid)


def person_name(value: str) -> str:
    """A DICOM person name (``Family^Given^Middle^Prefix^Suffix``) as "Family, Given Middle"."""
    parts = [p.strip() for p in str(value or "").split("=")[0].split("^")]
    family, rest = (parts[0], [p for p in parts[1:3] if p]) if parts else ("", [])
    if family and rest:
        return f"{family}, {' '.join(rest)}"
    return family or " ".join(rest)


def row_from_tags(values: Mapping[str, str], file_count: int = 0) -> DicomSeriesRow:
    """A row from the attribute values of one file of the series, keyed by :data:`TAGS` tag."""
    fields = {name: str(values.get(tag, "") or "").strip() for name, tag in TAGS.items()}
    if not fields["series_uid"]:
        raise DeepLiverError("a DICOM series row needs a Series Instance UID (0020,000E)")
    return DicomSeriesRow(file_count=int(file_count), **fields)


def row_sort_key(row: DicomSeriesRow) -> tuple:
    number = row.series_number_value
    return (
        person_name(row.patient_name).lower(),
        row.patient_id,
        row.study_date or "99999999",  # series without a date last within the patient
        row.study_uid,
        number is None,
        number if number is not None else 0,
        row.series_uid,
    )


@dataclass(frozen=True)
class WorklistEntry:
    """A series with its annotation status."""

    row: DicomSeriesRow
    status: str = NOT_STARTED
    revisions: int = 0
    last_reader: str = ""
    last_time: str = ""
    has_model: bool = False

    @property
    def series_uid(self) -> str:
        return self.row.series_uid

    @property
    def done(self) -> bool:
        return self.status in DONE

    def cells(self) -> tuple[str, ...]:
        """The texts of the worklist table's :data:`COLUMNS`."""
        status = self.status + (" (model)" if self.has_model and self.status == NOT_STARTED else "")
        return (
            self.row.patient_text,
            format_date(self.row.study_date),
            self.row.series_text,
            self.row.modality,
            str(self.row.file_count),
            status,
            self.last_reader,
        )


def format_date(value: str) -> str:
    """DICOM DA ``YYYYMMDD`` as ``YYYY-MM-DD`` (other text unchanged)."""
    text = str(value or "").strip()
    if len(text) == 8 and text.isdigit():
        return f"{text[:4]}-{text[4:6]}-{text[6:]}"
    return text


def _first(obj, names: tuple[str, ...], default=None):
    for name in names:
        value = getattr(obj, name, None)
        if value is not None:
            return value
    return default


def status_fields(status) -> tuple[str, dict]:
    """(series UID, entry fields) of one store status: a ``SeriesStatus``-like object."""
    identity = getattr(status, "identity", None)
    series_uid = _first(status, ("series_uid",)) or _first(identity, ("series_uid",), "")
    revisions = _first(status, ("revisions", "revision_count", "n_revisions"), 0)
    if not isinstance(revisions, int):
        revisions = len(revisions)
    fields = {
        "status": str(_first(status, ("status",), NOT_STARTED)),
        "revisions": revisions,
        "last_reader": str(_first(status, ("latest_reader", "last_reader", "reader"), "") or ""),
        "last_time": str(_first(status, ("latest_time", "last_time", "time"), "") or ""),
        "has_model": bool(_first(status, ("has_model", "model_revision"), False)),
    }
    if fields["status"] not in STATUSES:
        raise DeepLiverError(
            f"series {series_uid}: unknown status {fields['status']!r}; "
            f"known: {', '.join(STATUSES)}"
        )
    return str(series_uid), fields


def build_worklist(rows: Iterable[DicomSeriesRow], statuses=()) -> list[WorklistEntry]:
    """One entry per row (in :func:`row_sort_key` order), with the store's status where it has
    one. ``statuses``: store ``SeriesStatus`` objects, or a ``{series_uid: status}`` mapping."""
    known: dict[str, dict] = {}
    if isinstance(statuses, Mapping):
        for series_uid, status in statuses.items():
            known[str(series_uid)] = status_fields(_Plain(series_uid, status))[1]
    else:
        for status in statuses:
            series_uid, fields = status_fields(status)
            known[series_uid] = fields
    unique = {row.series_uid: row for row in rows}
    ordered = sorted(unique.values(), key=row_sort_key)
    return [WorklistEntry(row, **known.get(row.series_uid, {})) for row in ordered]


@dataclass(frozen=True)
class _Plain:
    series_uid: str
    status: str


@dataclass(frozen=True)
class WorklistFilter:
    """Which entries the worklist shows."""

    ct_only: bool = True
    not_done_only: bool = False
    text: str = ""

    def accepts(self, entry: WorklistEntry) -> bool:
        if self.ct_only and entry.row.modality.upper() != "CT":
            return False
        if self.not_done_only and entry.done:
            return False
        words = self.text.lower().split()
        if words:
            row = entry.row
            haystack = " ".join(
                (
                    row.patient_name,
                    person_name(row.patient_name),
                    row.patient_id,
                    row.study_description,
                    row.series_description,
                    row.series_uid,
                )
            ).lower()
            return all(word in haystack for word in words)
        return True

    def apply(self, entries: Iterable[WorklistEntry]) -> list[WorklistEntry]:
        return [entry for entry in entries if self.accepts(entry)]


def next_to_do(entries: list[WorklistEntry], after: str | None = None) -> WorklistEntry | None:
    """The first entry after the one with series UID ``after`` that is not done, wrapping
    around; never ``after`` itself. Without ``after`` (or when it is not listed) the first entry
    not done. None when nothing else is left to do."""
    if not entries:
        return None
    start = 0
    for index, entry in enumerate(entries):
        if entry.series_uid == after:
            start = index + 1
            break
    for offset in range(len(entries)):
        entry = entries[(start + offset) % len(entries)]
        if not entry.done and entry.series_uid != after:
            return entry
    return None


def count_by_status(entries: Iterable[WorklistEntry]) -> dict[str, int]:
    """How many entries have each status (all statuses present, zeros included)."""
    counts = dict.fromkeys(STATUSES, 0)
    for entry in entries:
        counts[entry.status] = counts.get(entry.status, 0) + 1
    return counts


def summary_text(shown: list[WorklistEntry], total: int) -> str:
    """ "12 of 40 series: 5 not started, 4 draft, 3 complete, 0 approved"."""
    counts = count_by_status(shown)
    parts = ", ".join(f"{counts[s]} {s}" for s in STATUSES)
    return f"{len(shown)} of {total} series: {parts}"
