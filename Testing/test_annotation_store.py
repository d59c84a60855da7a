"""The annotation store on real files: revisions never lost, never mixed up, never unsafe."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import multiprocessing
import os
import shutil
import subprocess
import time
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import slicerio
from store_helpers import phantom_series, tumor_box

import deepliver.annotation.store as store_module
from deepliver.annotation.naming import series_part, study_part
from deepliver.annotation.record import (
    REVISION_SCHEMA_VERSION,
    RecordError,
    Revision,
    schema,
)
from deepliver.annotation.segmentation import Segmentation
from deepliver.annotation.store import (
    AnnotationStore,
    SeriesChangedError,
    StoreWriteError,
)
from deepliver.errors import DeepLiverError
from deepliver.io.dicom_read import read_series
from deepliver.volume import Grid, GridMismatchError

MODEL = {"kind": "model", "name": "liver-cascade", "version": "0.3.1"}


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    return phantom_series(tmp_path_factory.mktemp("series") / "ct", seed=11)


@pytest.fixture(scope="module")
def other_series(tmp_path_factory):
    return phantom_series(tmp_path_factory.mktemp("other") / "ct", seed=12)


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def masks_equal(a: Segmentation, b: Segmentation) -> bool:
    if [s.name for s in a.segments] != [s.name for s in b.segments]:
        return False
    return all(np.array_equal(a.mask(s.name), b.mask(s.name)) for s in a.segments)


# --- the lifecycle -------------------------------------------------------------------------


def test_lifecycle_draft_model_complete(tmp_path, series):
    store = AnnotationStore(tmp_path / "store")
    uid = series.identity.series_uid
    assert store.next_series([uid]) == uid  # never seen: not started

    box = tumor_box(series)
    draft = store.save(
        series.identity, series.grid, series.segmentation, reader="Dr. Ada", boxes=[box]
    )
    model = store.save(
        series.identity, series.grid, series.segmentation, reader="pipeline", source=MODEL
    )
    edited = series.segmentation.without_segment("Tumor 2")
    final = store.save(
        series.identity,
        series.grid,
        edited,
        reader="Dr. Ada",
        status="complete",
        comment="second lesion was a vessel",
    )
    assert (draft.number, model.number, final.number) == (1, 2, 3)
    assert draft.status == "draft" and final.status == "complete"

    [status] = store.series()
    assert status.series_key == uid and status.identity == series.identity
    assert status.status == "complete" and status.done
    assert status.revisions == 3 and status.reader_revisions == 2 and status.has_model
    assert status.latest_number == 3 and status.latest_reader == "Dr. Ada"
    assert status.grid.same_as(series.grid) and status.problems == ()
    assert store.next_series() is None and store.next_series([uid, "1.2.3"]) == "1.2.3"

    assert [r.number for r in store.revisions(uid)] == [1, 2, 3]
    assert store.latest(uid).number == 3
    assert store.latest(uid, source="model").number == 2
    assert store.latest(uid, source=None).number == 3
    assert store.revision(uid, 1) == draft

    # Loading gives exactly what was saved, on the exact grid of the series.
    first = store.load(store.revision(uid, 1))
    assert first.grid.same_as(series.grid) and masks_equal(first, series.segmentation)
    np.testing.assert_array_equal(first.label_map().array, series.labels.array)
    last = store.load(store.latest(uid))
    assert masks_equal(last, edited)
    assert store.load(store.latest(uid, "model")).segments == series.segmentation.segments

    # The sidecar says everything, in the published schema.
    record = json.loads(draft.sidecar.read_text())
    jsonschema.validate(record, schema("revision"))
    assert record["schema_version"] == REVISION_SCHEMA_VERSION
    assert record["reader"] == "Dr. Ada" and record["source"] == {"kind": "manual"}
    assert record["boxes"] == [box]
    assert record["series"]["fingerprint"] == series.identity.fingerprint
    assert record["created"].endswith("Z")
    assert [s["name"] for s in record["segments"]] == ["Liver", "Tumor 1", "Tumor 2"]
    assert record["segments"][1]["structure"] == "Liver tumor"
    assert record["segments"][1]["label"] == 2
    assert json.loads(model.sidecar.read_text())["source"] == MODEL
    assert json.loads(final.sidecar.read_text())["comment"] == "second lesion was a vessel"

    # The layout: study / series / series.json + revisions/NNNN.{seg.nrrd,json}.
    folder = Path(series.identity.study_uid) / uid
    assert files_under(tmp_path / "store") == [
        series.identity.study_uid,
        str(folder),
        str(folder / "revisions"),
        *(
            str(folder / "revisions" / f"000{n}.{k}")
            for n in (1, 2, 3)
            for k in ("json", "seg.nrrd")
        ),
        str(folder / "series.json"),
    ]
    series_json = json.loads((tmp_path / "store" / folder / "series.json").read_text())
    jsonschema.validate(series_json, schema("series"))
    assert series_json["identity"]["sop_uids"] == list(series.identity.sop_uids)
    assert series_json["geometry"]["size"] == [32, 32, 12]
    assert np.allclose(series_json["geometry"]["origin"], series.grid.origin)


def test_a_model_revision_alone_does_not_start_a_series(tmp_path, series, other_series):
    store = AnnotationStore(tmp_path)
    store.save(series.identity, series.grid, series.segmentation, reader="auto", source=MODEL)
    store.save(other_series.identity, other_series.grid, other_series.segmentation, reader="B")
    statuses = {s.series_key: s for s in store.series()}
    modelled = statuses[series.identity.series_uid]
    assert modelled.status == "not started" and modelled.has_model
    assert modelled.reader_revisions == 0 and modelled.revisions == 1
    assert store.latest(series.identity.series_uid) is None
    assert store.latest(series.identity.series_uid, source="model").number == 1
    assert statuses[other_series.identity.series_uid].status == "draft"
    # Both still to do; the order is stable (patient, study, series key).
    keys = [s.series_key for s in store.series()]
    assert keys == sorted(keys, key=lambda k: (statuses[k].identity.study_uid, k))
    assert store.next_series() == keys[0]
    store.save(
        statuses[keys[0]].identity,
        statuses[keys[0]].grid,
        store.load(store.latest(keys[0], None)),
        reader="C",
        status="approved",
    )
    assert store.next_series() == keys[1]


# --- paths come only from UIDs ---------------------------------------------------------------


def test_descriptions_names_and_ids_never_reach_a_path(tmp_path, series):
    hostile = "../../../etc/passwd/\x00" + "x" * 5000
    identity = dataclasses.replace(series.identity, description=hostile, patient_id=hostile)
    store = AnnotationStore(tmp_path / "store")
    revision = store.save(
        identity, series.grid, series.segmentation, reader="../../evil/" + "r" * 200
    )
    for path in (tmp_path / "store").rglob("*"):
        parts = path.relative_to(tmp_path / "store").parts
        assert parts[0] == series.identity.study_uid
        assert len(parts) == 1 or parts[1] == series.identity.series_uid
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]
    assert revision.reader.startswith("../../evil/")
    [status] = store.series()
    assert status.identity.description == hostile  # kept as data, intact


@pytest.mark.parametrize(
    "series_uid",
    ["../evil", "1.2/3", "1.2\x003", "/1.2.3", "1." + "2" * 70, "..", "1..2", "1.2.", "a.b"],
)
def test_a_series_uid_that_is_no_uid_is_refused(tmp_path, series, series_uid):
    identity = dataclasses.replace(series.identity, series_uid=series_uid)
    with pytest.raises(DeepLiverError, match="not use it as a folder name"):
        AnnotationStore(tmp_path / "store").save(
            identity, series.grid, series.segmentation, reader="A"
        )
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize("study_uid", ["../..", "1.2/../3", "x" * 65, "1.2.3\x00"])
def test_a_study_uid_that_is_no_uid_is_refused(tmp_path, series, study_uid):
    identity = dataclasses.replace(series.identity, study_uid=study_uid)
    with pytest.raises(DeepLiverError, match="not a valid DICOM UID"):
        AnnotationStore(tmp_path / "store").save(
            identity, series.grid, series.segmentation, reader="A"
        )
    assert not (tmp_path / "store").exists()


def test_reader_names_that_cannot_be_stored_are_refused(tmp_path, series):
    store = AnnotationStore(tmp_path)
    for reader in ("", "   ", "a" * 300, "Dr\x00A"):
        with pytest.raises(DeepLiverError, match="reader"):
            store.save(series.identity, series.grid, series.segmentation, reader=reader)


def test_split_stacks_and_stand_in_keys_get_safe_folders(tmp_path, series):
    store = AnnotationStore(tmp_path)
    uid = series.identity.series_uid
    second = store.save(
        series.identity, series.grid, series.segmentation, reader="A", series_key=f"{uid}#2"
    )
    assert second.sidecar.parent.parent.name == f"{uid}_2"
    nameless = dataclasses.replace(series.identity, series_uid="", study_uid="")
    stand_in = "NO-SERIES-UID-0123456789ab"
    third = store.save(nameless, series.grid, series.segmentation, reader="A", series_key=stand_in)
    assert third.sidecar.parent.parent.parent.name == "NO-STUDY-UID"
    assert {s.series_key for s in store.series()} == {f"{uid}#2", stand_in}
    assert masks_equal(store.load(store.latest(f"{uid}#2")), series.segmentation)
    with pytest.raises(DeepLiverError, match="no Series Instance UID"):
        store.save(nameless, series.grid, series.segmentation, reader="A")
    with pytest.raises(DeepLiverError, match="does not belong"):
        store.save(series.identity, series.grid, series.segmentation, reader="A", series_key="9.9")
    assert series_part("1.2.3#12") == "1.2.3_12" and study_part("") == "NO-STUDY-UID"
    for key in ("1.2.3#0", "1.2.3#x", "NO-SERIES-UID-../..", "1.2#2#3"):
        with pytest.raises(DeepLiverError):
            series_part(key)


# --- grids and fingerprints ----------------------------------------------------------------


def test_a_segmentation_on_another_grid_is_refused(tmp_path, series):
    store = AnnotationStore(tmp_path)
    grid = series.grid
    shifted = Grid(grid.shape, grid.origin + [1.0, 0, 0], grid.spacing, grid.direction)
    moved = Segmentation(shifted, series.segmentation.segments, series.segmentation.masks)
    with pytest.raises(GridMismatchError, match=r"not on the grid of the series: origin"):
        store.save(series.identity, series.grid, moved, reader="A")
    smaller = Grid((11, 32, 32), grid.origin, grid.spacing, grid.direction)
    cut = Segmentation(smaller, series.segmentation.segments, series.segmentation.masks[:, :11])
    with pytest.raises(GridMismatchError, match=r"shape \(11, 32, 32\) vs \(12, 32, 32\)"):
        store.save(series.identity, series.grid, cut, reader="A")
    # A grid that is not the identity's (wrong series read, say) is refused too.
    with pytest.raises(GridMismatchError, match="not the grid of this series"):
        store.save(series.identity, shifted, moved, reader="A")
    assert not any(tmp_path.iterdir())


def test_the_same_series_uid_with_other_files_is_refused(tmp_path, series):
    store = AnnotationStore(tmp_path)
    store.save(series.identity, series.grid, series.segmentation, reader="A")
    fewer = series.identity.sop_uids[:-1]
    grid = Grid((11, 32, 32), series.grid.origin, series.grid.spacing, series.grid.direction)
    changed = dataclasses.replace(
        series.identity,
        sop_uids=fewer,
        fingerprint=store_module.series_fingerprint(fewer, grid),
    )
    segmentation = Segmentation(
        grid, series.segmentation.segments, series.segmentation.masks[:, :11]
    )
    with pytest.raises(SeriesChangedError, match="in the store with other files"):
        store.save(changed, grid, segmentation, reader="A")
    assert [r.number for r in store.revisions(series.identity.series_uid)] == [1]


def test_files_changed_on_disk_are_flagged_and_load_refuses(tmp_path, series):
    store = AnnotationStore(tmp_path / "store")
    revision = store.save(series.identity, series.grid, series.segmentation, reader="A")
    uid = series.identity.series_uid
    assert store.check(uid, series.identity).matches

    changed_folder = tmp_path / "changed"
    shutil.copytree(series.folder, changed_folder)
    sorted(changed_folder.iterdir())[-1].unlink()  # one slice gone
    _, on_disk = read_series(changed_folder)
    check = store.check(uid, on_disk)
    assert not check.matches and "changed since it was annotated" in check.message
    with pytest.raises(SeriesChangedError, match="accept_changed"):
        store.load(revision, on_disk)
    assert masks_equal(store.load(revision, on_disk, accept_changed=True), series.segmentation)
    assert masks_equal(store.load(revision, series.identity), series.segmentation)


def test_a_label_file_changed_after_saving_is_refused(tmp_path, series):
    store = AnnotationStore(tmp_path)
    revision = store.save(series.identity, series.grid, series.segmentation, reader="A")
    data = bytearray(revision.seg_path.read_bytes())
    data[-10] ^= 0xFF
    revision.seg_path.write_bytes(bytes(data))
    with pytest.raises(RecordError, match=r"0001\.seg\.nrrd: the label file changed"):
        store.load(revision)


# --- nothing is ever lost ----------------------------------------------------------------------


def test_an_interrupted_save_leaves_the_previous_revision_intact(tmp_path, series, monkeypatch):
    store = AnnotationStore(tmp_path)
    uid = series.identity.series_uid
    first = store.save(series.identity, series.grid, series.segmentation, reader="A")
    before = {p: p.read_bytes() for p in first.sidecar.parent.iterdir()}

    real_write = slicerio.write_segmentation

    def write_half_then_fail(name, data, **kwargs):  # the disk fills up mid-file
        real_write(name, data, **kwargs)
        written = Path(name).read_bytes()
        Path(name).write_bytes(written[: len(written) // 2])
        raise OSError(errno.ENOSPC, "No space left on device", str(name))

    # Fault injection at the library writer: everything of ours runs for real.
    monkeypatch.setattr(slicerio, "write_segmentation", write_half_then_fail)
    with pytest.raises(DeepLiverError, match="No space left on device"):
        store.save(series.identity, series.grid, series.segmentation, reader="A", status="complete")
    monkeypatch.undo()

    assert {p: p.read_bytes() for p in first.sidecar.parent.iterdir()} == before
    assert [r.number for r in store.revisions(uid)] == [1]
    assert store.series()[0].status == "draft"
    assert masks_equal(store.load(store.latest(uid)), series.segmentation)
    again = store.save(series.identity, series.grid, series.segmentation, reader="A")
    assert again.number == 2


def test_a_killed_saves_old_temporary_files_go_with_the_next_save(tmp_path, series):
    store = AnnotationStore(tmp_path)
    first = store.save(series.identity, series.grid, series.segmentation, reader="A")
    revisions = first.sidecar.parent
    # What a save killed in mid-write leaves, named as the store names its temporary files.
    old = store_module._temporary(revisions, "0002", ".seg.nrrd")
    old_record = store_module._temporary(revisions.parent, "series", ".json")
    young = store_module._temporary(revisions, "0003", ".seg.nrrd")  # another save, in progress
    for path in (old, old_record, young):
        path.write_bytes(b"half a file")
    hours_ago = time.time() - 2 * store_module.STALE_TEMPORARY_S
    for path in (old, old_record):
        os.utime(path, (hours_ago, hours_ago))
    kept = revisions / "notes.txt"  # not ours: never touched
    kept.write_text("reader's notes")
    os.utime(kept, (hours_ago, hours_ago))

    second = store.save(series.identity, series.grid, series.segmentation, reader="A")

    assert not old.exists() and not old_record.exists()
    assert young.read_bytes() == b"half a file" and kept.read_text() == "reader's notes"
    assert [r.number for r in store.revisions(series.identity.series_uid)] == [1, second.number]
    assert masks_equal(store.load(first), series.segmentation)


@contextlib.contextmanager
def tiny_tmpfs(folder: Path, size: str):
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or 'not root'})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_leaves_the_previous_revision_intact(tmp_path, series):
    with tiny_tmpfs(tmp_path / "disk", "1m") as disk:
        store = AnnotationStore(disk / "store")
        uid = series.identity.series_uid
        first = store.save(series.identity, series.grid, series.segmentation, reader="A")
        # Fill the disk to the last byte.
        with open(disk / "filler", "wb", buffering=0) as filler, contextlib.suppress(OSError):
            while True:
                filler.write(b"\0" * 4096)
        with pytest.raises(DeepLiverError, match="No space left on device"):
            store.save(series.identity, series.grid, series.segmentation, reader="A")
        assert [r.number for r in store.revisions(uid)] == [1]
        revisions_folder = first.sidecar.parent
        assert sorted(p.name for p in revisions_folder.iterdir()) == [
            "0001.json",
            "0001.seg.nrrd",
        ]
        assert masks_equal(store.load(store.latest(uid)), series.segmentation)
        (disk / "filler").unlink()
        assert store.save(series.identity, series.grid, series.segmentation, reader="A").number == 2


def _save_five(root: str, series, reader: str, barrier) -> None:
    barrier.wait()
    store = AnnotationStore(root)
    for _ in range(5):
        store.save(series.identity, series.grid, series.segmentation, reader=reader)


def test_two_processes_saving_at_once_keep_every_revision(tmp_path, series):
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(2)
    workers = [
        context.Process(target=_save_five, args=(str(tmp_path), series, f"reader {n}", barrier))
        for n in (1, 2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    store = AnnotationStore(tmp_path)
    uid = series.identity.series_uid
    revisions = store.revisions(uid)
    assert [r.number for r in revisions] == list(range(1, 11))
    assert sorted(r.reader for r in revisions) == ["reader 1"] * 5 + ["reader 2"] * 5
    assert store.problems(uid) == []
    for revision in revisions:
        assert masks_equal(store.load(revision), series.segmentation)
    names = sorted(p.name for p in revisions[0].sidecar.parent.iterdir())
    assert names == sorted(f"{n:04d}.{k}" for n in range(1, 11) for k in ("json", "seg.nrrd"))


@contextlib.contextmanager
def read_only(folder: Path):
    """A folder this process cannot write to: chmod for a user, the immutable flag for root."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    flagged = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
    if flagged.returncode != 0:
        pytest.skip(f"running as root without chattr +i here: {flagged.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_a_read_only_store_says_so_and_still_reads(tmp_path, series, other_series):
    root = tmp_path / "store"
    store = AnnotationStore(root)
    store.save(series.identity, series.grid, series.segmentation, reader="A")
    with read_only(root):
        with pytest.raises(StoreWriteError, match=f"annotation store {root}.*read-only"):
            store.save(
                other_series.identity, other_series.grid, other_series.segmentation, reader="A"
            )
        assert [s.series_key for s in store.series()] == [series.identity.series_uid]
        assert masks_equal(
            store.load(store.latest(series.identity.series_uid)), series.segmentation
        )
    assert not (root / other_series.identity.study_uid).exists()


def test_a_store_root_that_is_a_file_is_refused(tmp_path, series):
    root = tmp_path / "store"
    root.write_text("not a folder")
    store = AnnotationStore(root)
    with pytest.raises(StoreWriteError, match="is a file, not a folder"):
        store.save(series.identity, series.grid, series.segmentation, reader="A")
    with pytest.raises(DeepLiverError, match="is a file, not a folder"):
        store.series()
    with pytest.raises(DeepLiverError, match="does not exist"):
        AnnotationStore(tmp_path / "missing").series()


# --- hand-edited records -----------------------------------------------------------------------


def test_broken_sidecars_are_named_and_the_rest_still_loads(tmp_path, series, other_series):
    store = AnnotationStore(tmp_path)
    uid, other = series.identity.series_uid, other_series.identity.series_uid
    store.save(series.identity, series.grid, series.segmentation, reader="A")
    second = store.save(series.identity, series.grid, series.segmentation, reader="A")
    third = store.save(series.identity, series.grid, series.segmentation, reader="A")
    store.save(other_series.identity, other_series.grid, other_series.segmentation, reader="B")

    second.sidecar.write_text('{"schema_version": 2, "number": 2,')  # cut off by hand
    record = json.loads(third.sidecar.read_text())
    record["status"] = "finished"
    third.sidecar.write_text(json.dumps(record))

    listing = store.listing()
    assert {s.series_key: s.revisions for s in listing.series} == {uid: 1, other: 1}
    messages = sorted(p.message for p in listing.problems)
    assert len(messages) == 2
    assert messages[0].startswith(str(second.sidecar)) and "not valid JSON" in messages[0]
    assert messages[1].startswith(str(third.sidecar)) and "at status" in messages[1]
    with pytest.raises(RecordError, match=r"0002\.json: not valid JSON \(line 1"):
        store.revision(uid, 2)
    with pytest.raises(RecordError, match=r"newest revision .*/0002\.json: not valid JSON"):
        store.latest(uid)
    assert store.revision(uid, 1).number == 1
    assert masks_equal(store.load(store.revision(uid, 1)), series.segmentation)
    assert masks_equal(store.load(store.latest(other)), other_series.segmentation)

    # A broken series.json drops that series from the list (as a problem), not the others.
    series_json = second.sidecar.parent.parent / "series.json"
    series_json.write_text("{}")
    listing = store.listing()
    assert [s.series_key for s in listing.series] == [other]
    assert any(p.path == series_json and "series schema" in p.message for p in listing.problems)


def test_an_old_schema_version_record_still_loads(tmp_path, series):
    store = AnnotationStore(tmp_path)
    saved = store.save(series.identity, series.grid, series.segmentation, reader="A")
    # Revision schema version 1: no boxes, no comment, no source (a reader's drawing).
    version_1 = {
        "schema_version": 1,
        "number": 1,
        "created": "2024-03-01T09:30:00Z",
        "reader": "Dr. Old",
        "status": "complete",
        "series": {
            "study_uid": series.identity.study_uid,
            "series_key": series.identity.series_uid,
            "fingerprint": series.identity.fingerprint,
        },
        "segments": [s.to_dict() for s in saved.segments],
        "seg_file": "0001.seg.nrrd",
        "seg_sha256": saved.seg_sha256,
    }
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(version_1, schema("revision"))  # not the current layout
    saved.sidecar.write_text(json.dumps(version_1))

    [old] = store.revisions(series.identity.series_uid)
    assert old.schema_version_read == 1
    assert old.source.kind == "manual" and old.boxes == () and old.comment == ""
    assert old.reader == "Dr. Old" and store.series()[0].status == "complete"
    assert masks_equal(store.load(old), series.segmentation)
    jsonschema.validate(old.to_dict(), schema("revision"))  # written back as the current one

    version_1["schema_version"] = REVISION_SCHEMA_VERSION + 1
    with pytest.raises(RecordError, match="update DeepLiver"):
        Revision.from_dict(version_1, "future.json")


def test_the_schemas_are_valid_and_versioned():
    for name in ("revision", "series"):
        document = schema(name)
        jsonschema.Draft202012Validator.check_schema(document)
        assert "schema_version" in document["required"]
    assert schema("revision")["properties"]["schema_version"] == {"const": REVISION_SCHEMA_VERSION}


def test_bad_revision_fields_are_refused_before_anything_is_written(tmp_path, series):
    store = AnnotationStore(tmp_path)
    save = lambda **kw: store.save(  # noqa: E731
        series.identity, series.grid, series.segmentation, **{"reader": "A", **kw}
    )
    with pytest.raises(DeepLiverError, match="status must be one of"):
        save(status="done")
    with pytest.raises(DeepLiverError, match="name and version"):
        save(source={"kind": "model", "name": "x"})
    with pytest.raises(DeepLiverError, match="'manual' or 'model'"):
        save(source={"kind": "guess"})
    with pytest.raises(DeepLiverError, match="not in the segmentation"):
        save(boxes=[{"segment": "Tumor 9", "min": [0, 0, 0], "max": [1, 1, 1]}])
    with pytest.raises(DeepLiverError, match="must not exceed"):
        save(boxes=[{"segment": "Tumor 1", "min": [0, 0, 2], "max": [1, 1, 1]}])
    empty = Segmentation(series.grid)
    with pytest.raises(DeepLiverError, match="no segments"):
        store.save(series.identity, series.grid, empty, reader="A")
    assert not any(tmp_path.iterdir())
