"""The annotation store: every revision of every annotated series, in one folder, never lost.

Layout (folder names come only from UIDs and scan keys, see :mod:`deepliver.annotation.naming`)::

    <root>/<StudyInstanceUID>/<series key>/series.json          identity and grid of the series
    <root>/<StudyInstanceUID>/<series key>/revisions/0001.seg.nrrd   the labels (Slicer format)
    <root>/<StudyInstanceUID>/<series key>/revisions/0001.json       the sidecar (the record)

How a save stays safe:

1. the revision number is reserved by creating ``NNNN.seg.nrrd`` empty with ``O_CREAT|O_EXCL``:
   two processes can never get the same number, and a number is one more than any seen;
2. the labels are written to a hidden temporary file, flushed to disk, hashed, and renamed onto
   ``NNNN.seg.nrrd``;
3. the sidecar is written last, the same way, onto ``NNNN.json``. A revision exists only once
   its sidecar does; a save that fails at any step removes what it wrote and leaves every
   earlier revision as it was. A save that was killed leaves hidden temporary files; the next
   save into that series removes those an hour old or more (a younger one may belong to
   another reader's save in progress).

Reading never trusts a file blindly: each sidecar is checked against the JSON Schema, the
label file against the sha256 in its sidecar, and its grid against the series grid. A broken
sidecar is reported by name, and the other revisions and series still list and load.

Files that changed on disk: a revision records the fingerprint of the series it was drawn on.
:meth:`AnnotationStore.check` compares it with the series as read now, and
:meth:`AnnotationStore.load` refuses (:class:`SeriesChangedError`) when given the series as
read now and it differs, unless the caller passes ``accept_changed=True``.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from deepliver.annotation.naming import (
    REVISION_NAME,
    key_matches_uid,
    revision_stem,
    series_part,
    study_part,
)
from deepliver.annotation.record import (
    MANUAL,
    MODEL,
    STATUSES,
    LesionBox,
    RecordError,
    Revision,
    SeriesRecord,
    Source,
    segment_records,
    utc_now,
)
from deepliver.annotation.segmentation import Segmentation
from deepliver.errors import DeepLiverError
from deepliver.io.atomic import remove_leftovers
from deepliver.io.checksum import file_sha256
from deepliver.io.seg_nrrd import read_seg_nrrd, write_seg_nrrd
from deepliver.io.series_identity import SeriesIdentity, series_fingerprint
from deepliver.volume import Grid, GridMismatchError

NOT_STARTED = "not started"
SERIES_FILE = "series.json"
REVISIONS_FOLDER = "revisions"
STALE_TEMPORARY_S = 3600.0  # a killed save's temporary file; a save takes seconds
READER_MAX_LENGTH = 256
# Done series: next_series() passes over them.
DONE = ("complete", "approved")


class SeriesChangedError(DeepLiverError):
    """The series on disk is not the one the annotation was drawn on (its fingerprint differs)."""


class StoreWriteError(DeepLiverError):
    """The store folder cannot be written (read-only, full, not a folder)."""


@dataclass(frozen=True)
class StoreProblem:
    """A record the store could not use; the listing goes on without it."""

    path: Path
    message: str


@dataclass(frozen=True)
class SeriesStatus:
    """One annotated series as a worklist shows it.

    ``status`` comes from the latest reader (manual) revision; model revisions do not start a
    series. ``latest_time`` and ``latest_reader`` are of the newest revision of any source.
    """

    series_key: str
    identity: SeriesIdentity
    grid: Grid
    status: str  # "not started" | "draft" | "complete" | "approved"
    revisions: int
    reader_revisions: int
    latest_number: int | None
    latest_time: str | None
    latest_reader: str | None
    has_model: bool
    problems: tuple[StoreProblem, ...] = ()

    @property
    def done(self) -> bool:
        return self.status in DONE


@dataclass(frozen=True)
class StoreListing:
    """Every readable series (in a stable order) and every record that could not be read."""

    series: list[SeriesStatus]
    problems: list[StoreProblem]


@dataclass(frozen=True)
class FingerprintCheck:
    """Whether the series on disk is still the one annotated."""

    series_key: str
    stored: str
    on_disk: str

    @property
    def matches(self) -> bool:
        return self.stored == self.on_disk

    @property
    def message(self) -> str:
        if self.matches:
            return f"series {self.series_key}: files unchanged since annotation"
        return (
            f"series {self.series_key}: its files changed since it was annotated (fingerprint "
            f"{self.stored[:12]}... in the store, {self.on_disk[:12]}... on disk: slices added, "
            "removed or moved); the annotation may not fit these files"
        )


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform or file system allows it
        handle = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


def _write_text_file(path: Path, text: str) -> None:
    with open(path, "x", encoding="utf-8") as fp:
        fp.write(text)
        fp.flush()
        os.fsync(fp.fileno())


def _temporary(folder: Path, stem: str, suffix: str) -> Path:
    return folder / f".{stem}.{os.getpid()}.{os.urandom(4).hex()}.partial{suffix}"


class AnnotationStore:
    """All annotations under one folder, by Study and Series Instance UID, as revisions."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"AnnotationStore({str(self.root)!r})"

    # --- saving --------------------------------------------------------------------------

    def save(
        self,
        identity: SeriesIdentity,
        grid: Grid,
        segmentation: Segmentation,
        *,
        reader: str,
        status: str = "draft",
        source: Source | dict | None = None,
        boxes: Iterable[LesionBox | dict] = (),
        comment: str = "",
        series_key: str | None = None,
    ) -> Revision:
        """Store ``segmentation`` as a new revision of the series ``identity`` on ``grid``.

        ``grid`` is the series grid (its fingerprint must be the identity's); the segmentation
        must lie on it. ``source`` is ``{"kind": "manual"}`` (default) or ``{"kind": "model",
        "name": ..., "version": ...}``. ``series_key`` is the scan's key when it is not the
        Series Instance UID (``UID#2``, ``NO-SERIES-UID-...``). Never overwrites anything.
        """
        reader = self._checked_reader(reader)
        if status not in STATUSES:
            raise DeepLiverError(f"status must be one of {', '.join(STATUSES)}; got {status!r}")
        source = source if isinstance(source, Source) else Source.from_dict(source)
        if not isinstance(comment, str):
            raise DeepLiverError(f"a comment is text, got {type(comment).__name__}")
        boxes = tuple(b if isinstance(b, LesionBox) else LesionBox.from_dict(b) for b in boxes)
        key = self._checked_key(identity, series_key)
        self._check_grid(identity, key, grid, segmentation)
        names = {s.name for s in segmentation.segments}
        unknown = sorted({b.segment for b in boxes} - names)
        if unknown:
            raise DeepLiverError(f"boxes name segments that are not in the segmentation: {unknown}")
        if not segmentation.segments:
            raise DeepLiverError(f"series {key}: nothing to save, the segmentation has no segments")

        folder = self._series_folder(identity.study_uid, key)
        record = SeriesRecord(key, identity, grid)
        with self._writing(folder):
            self._require_root()
            folder.mkdir(parents=True, exist_ok=True)
            self._put_series_record(folder, record)
            revisions = folder / REVISIONS_FOLDER
            revisions.mkdir(exist_ok=True)
            for place in (folder, revisions):
                remove_leftovers(place, STALE_TEMPORARY_S)
            number, seg_path = self._reserve(revisions)
        sidecar = seg_path.with_name(f"{revision_stem(number)}.json")
        temporaries: list[Path] = []
        try:
            with self._writing(revisions):
                temporary = _temporary(revisions, revision_stem(number), ".seg.nrrd")
                temporaries.append(temporary)
                write_seg_nrrd(segmentation, temporary)
                with open(temporary, "rb") as fp:
                    os.fsync(fp.fileno())
                seg_sha256 = file_sha256(temporary)
                os.replace(temporary, seg_path)
                revision = Revision(
                    number=number,
                    created=utc_now(),
                    reader=reader,
                    status=status,
                    source=source,
                    comment=comment,
                    study_uid=identity.study_uid,
                    series_key=key,
                    fingerprint=identity.fingerprint,
                    segments=segment_records(segmentation),
                    boxes=boxes,
                    seg_file=seg_path.name,
                    seg_sha256=seg_sha256,
                    sidecar=sidecar,
                )
                text = revision.to_json()
                temporary = _temporary(revisions, revision_stem(number), ".json")
                temporaries.append(temporary)
                _write_text_file(temporary, text)
                os.replace(temporary, sidecar)
                _fsync_folder(revisions)
        except BaseException:
            for path in temporaries:
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)
            if not sidecar.exists():  # give the number back: nothing refers to it
                with contextlib.suppress(OSError):
                    seg_path.unlink(missing_ok=True)
            raise
        return revision

    def _checked_reader(self, reader: str) -> str:
        if not isinstance(reader, str) or not reader.strip():
            raise DeepLiverError("a revision needs the reader's name (who saved it)")
        reader = reader.strip()
        if len(reader) > READER_MAX_LENGTH or "\x00" in reader:
            raise DeepLiverError(
                f"reader name must be at most {READER_MAX_LENGTH} characters, without NUL"
            )
        return reader

    @staticmethod
    def _checked_key(identity: SeriesIdentity, series_key: str | None) -> str:
        key = series_key if series_key is not None else identity.series_uid
        if not key:
            raise DeepLiverError(
                "this series has no Series Instance UID; pass the scan's key "
                "(NO-SERIES-UID-...) as series_key"
            )
        series_part(key)  # refuses anything that is not a UID or a scan key
        study_part(identity.study_uid)
        if not key_matches_uid(key, identity.series_uid):
            raise DeepLiverError(
                f"series key {key!r} does not belong to Series Instance UID {identity.series_uid!r}"
            )
        return key

    @staticmethod
    def _check_grid(
        identity: SeriesIdentity, key: str, grid: Grid, segmentation: Segmentation
    ) -> None:
        if series_fingerprint(identity.sop_uids, grid) != identity.fingerprint:
            raise GridMismatchError(
                f"series {key}: the grid given is not the grid of this series (its fingerprint "
                "does not match the identity's); pass the grid the series was read on"
            )
        if not segmentation.grid.same_as(grid):
            raise GridMismatchError(
                f"series {key}: the segmentation is not on the grid of the series: "
                f"{segmentation.grid.describe_difference(grid)}"
            )

    def _require_root(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise StoreWriteError(f"annotation store {self.root} is a file, not a folder")
        self.root.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def _writing(self, folder: Path) -> Iterator[None]:
        """OSErrors while writing become one clear error naming the folder."""
        try:
            yield
        except OSError as error:
            reason = error.strerror or str(error)
            if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                reason += " (the store folder is read-only for this user)"
            where = f": {error.filename}" if error.filename else ""
            raise StoreWriteError(
                f"cannot write to the annotation store {self.root} (in {folder}): {reason}{where}"
            ) from None

    def _put_series_record(self, folder: Path, record: SeriesRecord) -> None:
        """Write series.json once (race-free); later saves must bring the same series."""
        path = folder / SERIES_FILE
        if not path.exists():
            temporary = _temporary(folder, "series", ".json")
            _write_text_file(temporary, record.to_json())
            try:
                os.link(temporary, path)  # fails if another process was first
            except FileExistsError:
                pass
            except OSError:  # no hard links on this file system: rename instead
                if not path.exists():
                    os.replace(temporary, path)
            finally:
                temporary.unlink(missing_ok=True)
            _fsync_folder(folder)
        stored = SeriesRecord.read(path)
        if stored.identity.fingerprint != record.identity.fingerprint:
            raise SeriesChangedError(
                f"series {record.series_key} is in the store with other files (fingerprint "
                f"{stored.identity.fingerprint[:12]}... in {path}, "
                f"{record.identity.fingerprint[:12]}... now: slices added, removed or moved "
                "since it was first annotated); "
                "refusing to mix revisions of different files under one series"
            )

    @staticmethod
    def _reserve(revisions: Path) -> tuple[int, Path]:
        """The next revision number, claimed by creating its label file empty and exclusively."""
        number = 1 + max(
            (int(m["number"]) for m in map(REVISION_NAME.fullmatch, os.listdir(revisions)) if m),
            default=0,
        )
        while True:
            path = revisions / f"{revision_stem(number)}.seg.nrrd"
            try:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            except FileExistsError:
                number += 1
                continue
            return number, path

    # --- finding series --------------------------------------------------------------------

    def _series_folder(self, study_uid: str, series_key: str) -> Path:
        return self.root / study_part(study_uid) / series_part(series_key)

    def _find_folder(self, series_key: str) -> Path:
        part = series_part(series_key)
        self._require_store()
        found = [
            study / part
            for study in sorted(self.root.iterdir())
            if study.is_dir() and (study / part / SERIES_FILE).is_file()
        ]
        if not found:
            raise DeepLiverError(f"series {series_key} is not in the annotation store {self.root}")
        if len(found) > 1:
            shown = ", ".join(str(f) for f in found)
            raise DeepLiverError(f"series {series_key} is in the store twice: {shown}")
        return found[0]

    def _require_store(self) -> None:
        if not self.root.is_dir():
            what = "is a file, not a folder" if self.root.exists() else "does not exist"
            raise DeepLiverError(f"annotation store {self.root} {what}")

    def series_record(self, series_key: str) -> SeriesRecord:
        """The identity and grid stored for a series."""
        folder = self._find_folder(series_key)
        record = SeriesRecord.read(folder / SERIES_FILE)
        if record.series_key != series_key:
            raise RecordError(
                f"{folder / SERIES_FILE}: names series {record.series_key!r}, "
                f"but lies in the folder of {series_key!r}"
            )
        return record

    # --- revisions ---------------------------------------------------------------------------

    def _read_revisions(self, folder: Path, series_key: str) -> tuple[list[Revision], list]:
        revisions_folder = folder / REVISIONS_FOLDER
        if not revisions_folder.is_dir():
            return [], []
        good: list[Revision] = []
        problems: list[StoreProblem] = []
        for name in sorted(os.listdir(revisions_folder)):
            match = REVISION_NAME.fullmatch(name)
            if not match or match["kind"] != "json":
                continue
            path = revisions_folder / name
            try:
                revision = Revision.read(path)
                self._check_sidecar(revision, path, int(match["number"]), series_key)
            except DeepLiverError as error:
                problems.append(StoreProblem(path, str(error)))
                continue
            good.append(revision)
        good.sort(key=lambda r: r.number)
        return good, problems

    @staticmethod
    def _check_sidecar(revision: Revision, path: Path, number: int, series_key: str) -> None:
        expected = f"{revision_stem(number)}.seg.nrrd"
        if revision.number != number or revision.seg_file != expected:
            raise RecordError(
                f"{path}: says revision {revision.number} with file {revision.seg_file}, "
                f"but its name says revision {number} ({expected})"
            )
        if revision.series_key != series_key:
            raise RecordError(
                f"{path}: belongs to series {revision.series_key!r}, not {series_key!r}"
            )

    def revisions(self, series_key: str) -> list[Revision]:
        """Every readable revision of a series, oldest first (unreadable ones: :meth:`problems`)."""
        return self._read_revisions(self._find_folder(series_key), series_key)[0]

    def problems(self, series_key: str) -> list[StoreProblem]:
        """The sidecars of a series that cannot be used, each with a message naming the file."""
        return self._read_revisions(self._find_folder(series_key), series_key)[1]

    def revision(self, series_key: str, number: int) -> Revision:
        """One revision by number; a clear error naming the sidecar if it is broken."""
        folder = self._find_folder(series_key)
        path = folder / REVISIONS_FOLDER / f"{revision_stem(number)}.json"
        if not path.is_file():
            numbers = [r.number for r in self.revisions(series_key)]
            raise DeepLiverError(
                f"series {series_key} has no revision {number}; revisions: {numbers or 'none'}"
            )
        revision = Revision.read(path)
        self._check_sidecar(revision, path, number, series_key)
        return revision

    def latest(self, series_key: str, source: str | None = MANUAL) -> Revision | None:
        """The newest revision from ``source`` ("manual", "model", None for any), or None.

        A newer sidecar that cannot be read is an error (naming it) rather than being passed
        over silently: it may be the reader's latest work.
        """
        if source not in (MANUAL, MODEL, None):
            raise DeepLiverError(f"source must be 'manual', 'model' or None, got {source!r}")
        good, problems = self._read_revisions(self._find_folder(series_key), series_key)
        chosen = [r for r in good if source is None or r.source.kind == source]
        newest = chosen[-1] if chosen else None
        floor = newest.number if newest else 0
        for problem in problems:
            match = REVISION_NAME.fullmatch(problem.path.name)
            if match and int(match["number"]) > floor:
                raise RecordError(
                    f"the newest revision of series {series_key} cannot be read: {problem.message}"
                )
        return newest

    # --- loading -----------------------------------------------------------------------------

    def check(self, series_key: str, identity_on_disk: SeriesIdentity) -> FingerprintCheck:
        """Compare the stored fingerprint of a series with the series as read from disk now."""
        record = self.series_record(series_key)
        return FingerprintCheck(
            series_key, record.identity.fingerprint, identity_on_disk.fingerprint
        )

    def load(
        self,
        revision: Revision,
        identity_on_disk: SeriesIdentity | None = None,
        *,
        accept_changed: bool = False,
    ) -> Segmentation:
        """The labels of ``revision`` on the exact series grid, checked every way we can.

        The label file must have the sha256 of its sidecar and lie on the stored series grid.
        With ``identity_on_disk`` (the series as read now), a series whose files changed since
        the revision was drawn is refused with :class:`SeriesChangedError`, unless
        ``accept_changed``. Without it, the caller vouches for the files.
        """
        if revision.sidecar is None:
            raise DeepLiverError("this revision was not read from a store; nothing to load")
        record = self.series_record(revision.series_key)
        if revision.fingerprint != record.identity.fingerprint:
            raise RecordError(
                f"{revision.sidecar}: drawn on series fingerprint {revision.fingerprint[:12]}..., "
                f"but the store's series has {record.identity.fingerprint[:12]}..."
            )
        if identity_on_disk is not None and not accept_changed:
            check = FingerprintCheck(
                revision.series_key, revision.fingerprint, identity_on_disk.fingerprint
            )
            if not check.matches:
                raise SeriesChangedError(check.message + " (load with accept_changed to use it)")
        path = revision.seg_path
        try:
            actual = file_sha256(path)
        except OSError as error:
            raise RecordError(f"{path}: cannot be read ({error.strerror or error})") from None
        if actual != revision.seg_sha256:
            raise RecordError(
                f"{path}: the label file changed since it was saved (sha256 {actual[:12]}..., "
                f"its sidecar {revision.sidecar.name} says {revision.seg_sha256[:12]}...)"
            )
        segmentation = read_seg_nrrd(path)
        if not segmentation.grid.same_as(record.grid):
            raise GridMismatchError(
                f"{path}: not on the grid of series {revision.series_key}: "
                f"{segmentation.grid.describe_difference(record.grid)}"
            )
        stored = [s.name for s in revision.segments]
        found = [s.name for s in segmentation.segments]
        if sorted(stored) != sorted(found):
            raise RecordError(f"{path}: holds segments {found}, its sidecar lists {stored}")
        return Segmentation(record.grid, segmentation.segments, segmentation.masks)

    # --- the worklist --------------------------------------------------------------------------

    def listing(self) -> StoreListing:
        """Every series with its status, and every record that could not be read."""
        self._require_store()
        statuses: list[SeriesStatus] = []
        problems: list[StoreProblem] = []
        for study in sorted(self.root.iterdir()):
            if not study.is_dir() or study.name.startswith("."):
                continue
            for folder in sorted(study.iterdir()):
                path = folder / SERIES_FILE
                if not folder.is_dir() or not path.is_file():
                    continue
                try:
                    record = SeriesRecord.read(path)
                    self._check_place(record, folder, path)
                except DeepLiverError as error:
                    problems.append(StoreProblem(path, str(error)))
                    continue
                revisions, broken = self._read_revisions(folder, record.series_key)
                problems.extend(broken)
                statuses.append(self._status(record, revisions, broken))
        statuses.sort(key=lambda s: (s.identity.patient_id, s.identity.study_uid, s.series_key))
        return StoreListing(statuses, problems)

    @staticmethod
    def _check_place(record: SeriesRecord, folder: Path, path: Path) -> None:
        expected = (study_part(record.identity.study_uid), series_part(record.series_key))
        if (folder.parent.name, folder.name) != expected:
            raise RecordError(
                f"{path}: describes series {record.series_key!r} of study "
                f"{record.identity.study_uid!r}, which belongs in {'/'.join(expected)}"
            )

    @staticmethod
    def _status(record: SeriesRecord, revisions: list[Revision], broken) -> SeriesStatus:
        manual = [r for r in revisions if not r.is_model]
        newest = revisions[-1] if revisions else None
        return SeriesStatus(
            series_key=record.series_key,
            identity=record.identity,
            grid=record.grid,
            status=manual[-1].status if manual else NOT_STARTED,
            revisions=len(revisions),
            reader_revisions=len(manual),
            latest_number=newest.number if newest else None,
            latest_time=newest.created if newest else None,
            latest_reader=newest.reader if newest else None,
            has_model=any(r.is_model for r in revisions),
            problems=tuple(broken),
        )

    def series(self) -> list[SeriesStatus]:
        """Every readable series, ordered by patient ID, study UID and series key."""
        return self.listing().series

    def status(self, series_key: str) -> SeriesStatus:
        folder = self._find_folder(series_key)
        record = self.series_record(series_key)
        revisions, broken = self._read_revisions(folder, series_key)
        return self._status(record, revisions, broken)

    def next_series(self, candidates: list[str] | None = None) -> str | None:
        """The first series not yet complete or approved.

        ``candidates`` (series keys, e.g. a DICOM database's series in its order) are taken in
        the order given, those the store has never seen counting as not started; without them,
        the store's own series in :meth:`series` order.
        """
        if candidates is None:
            if not self.root.is_dir():
                return None
            return next((s.series_key for s in self.series() if not s.done), None)
        done = set()
        if self.root.is_dir():
            done = {s.series_key for s in self.series() if s.done}
        return next((key for key in candidates if key not in done), None)
