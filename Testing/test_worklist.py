"""The review worklist and the review rules (deepliver.annotation.worklist / .review), and the
Slicer-free parts of the Review module's glue."""

import errno
import sys
from pathlib import Path

import numpy as np
import pytest
import slicerio
from store_helpers import phantom_series, tumor_box

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepliver.annotation import review, worklist
from deepliver.annotation.record import LesionBox
from deepliver.annotation.segmentation import Segment, Segmentation
from deepliver.annotation.store import AnnotationStore
from deepliver.annotation.structures import LIVER, TUMOR
from deepliver.annotation.worklist import (
    DicomSeriesRow,
    WorklistEntry,
    WorklistFilter,
    build_worklist,
    next_to_do,
)
from deepliver.errors import DeepLiverError
from deepliver.io.series_identity import SeriesIdentity
from deepliver.volume import Grid
from DeepLiverSlicer import dicom_database, segmentations
from DeepLiverSlicer import review as review_glue
from DeepLiverSlicer.dicom_identity import SlicerDicomIdentity


def row(uid, patient="Doe^Jane", pid="P1", date="20240102", number="2", modality="CT", **kw):
    return DicomSeriesRow(
        series_uid=uid,
        patient_name=patient,
        patient_id=pid,
        study_uid=kw.pop("study", "1.2.1"),
        study_date=date,
        series_number=number,
        modality=modality,
        series_description=kw.pop("description", "Abdomen portal"),
        file_count=kw.pop("files", 120),
        **kw,
    )


MODEL = {"kind": "model", "name": "liver-cascade", "version": "0.3.1"}
UNSEEN = "1.2.840.99.99"  # a Series Instance UID the store below never saw


class Stored:
    """A real AnnotationStore holding four phantom series, each at another stage:

    ``complete``: reader draft (1), reader complete without Tumor 2 and with a box (2), then a
    newer model revision (3); ``model``: one model revision only; ``draft``: one reader draft;
    ``interrupted``: its first save failed (disk full) after the series record was written, so
    the store knows the series but holds no revision of it.
    """

    def __init__(self, root: Path, series: dict):
        self.store = AnnotationStore(root / "store")
        self.series = series
        self.uid = {name: s.identity.series_uid for name, s in series.items()}
        self.revisions = {}

        def save(name, segmentation=None, **kw):
            one = series[name]
            if segmentation is None:
                segmentation = one.segmentation
            made = self.store.save(one.identity, one.grid, segmentation, **kw)
            self.revisions.setdefault(name, []).append(made)

        full = series["complete"].segmentation
        save("complete", reader="dr a", status="draft")
        save(
            "complete",
            full.without_segment("Tumor 2"),
            reader="dr a",
            status="complete",
            boxes=[tumor_box(series["complete"])],
        )
        save("complete", reader="pipeline", source=MODEL)
        save("model", reader="pipeline", source=MODEL)
        save("draft", reader="dr a", status="draft")

        def disk_full(name, data, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device", name)

        # Fault injection at the library writer: everything of ours runs for real.
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(slicerio, "write_segmentation", disk_full)
            with pytest.raises(DeepLiverError, match="No space left on device"):
                save("interrupted", reader="dr a")


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    root = tmp_path_factory.mktemp("worklist")
    names = ("complete", "model", "draft", "interrupted")
    series = {
        name: phantom_series(root / name, seed=31 + n, description=f"Phantom {name}")
        for n, name in enumerate(names)
    }
    return Stored(root, series)


# --- rows ----------------------------------------------------------------------------------


def test_row_from_the_tags_of_one_file():
    values = {
        "0010,0010": "Doe^Jane^M",
        "0010,0020": "P1 ",
        "0020,000D": "1.2.1",
        "0008,0020": "20240102",
        "0008,1030": "CT abdomen",
        "0020,000E": "1.2.1.5",
        "0020,0011": " 5",
        "0008,0060": "CT",
        "0008,103E": "Portal venous",
    }
    made = worklist.row_from_tags(values, 88)
    assert made.series_uid == "1.2.1.5"
    assert made.patient_id == "P1" and made.series_number_value == 5
    assert made.patient_text == "Doe, Jane M (P1)"
    assert made.series_text == "5: Portal venous"
    assert made.file_count == 88
    with pytest.raises(DeepLiverError, match="Series Instance UID"):
        worklist.row_from_tags({"0008,0060": "CT"})


def test_person_names_and_dates():
    assert worklist.person_name("Doe^Jane") == "Doe, Jane"
    assert worklist.person_name("Doe") == "Doe"
    assert worklist.person_name("^Jane") == "Jane"
    assert worklist.person_name("Yamada^Tarou=山田^太郎") == "Yamada, Tarou"
    assert worklist.person_name("") == ""
    assert worklist.format_date("20240102") == "2024-01-02"
    assert worklist.format_date("2024") == "2024"


# --- joining and ordering ------------------------------------------------------------------


def test_worklist_joins_statuses_and_orders_stably(stored):
    draft = stored.uid["draft"]
    rows = [
        row("1.3", patient="Zed^A", pid="P9", number="1"),
        row("1.2.10", number="10"),
        row(draft, number="2"),
        row("1.2.9", number=""),  # no series number: after the numbered ones
        row("1.1", date="20230101", study="1.2.0", number="7"),  # earlier study first
    ]
    statuses = stored.store.series()  # also holds series that are not among the rows
    assert len(statuses) == 4
    entries = build_worklist(rows, statuses)
    assert [e.series_uid for e in entries] == ["1.1", draft, "1.2.10", "1.2.9", "1.3"]
    by_uid = {e.series_uid: e for e in entries}
    saved = stored.revisions["draft"][0]
    assert by_uid[draft].status == "draft" and by_uid[draft].last_reader == "dr a"
    assert by_uid[draft].revisions == 1 and by_uid[draft].last_time == saved.created
    assert by_uid["1.2.10"].status == "not started" and by_uid["1.2.10"].revisions == 0
    assert by_uid["1.2.10"].last_reader == "" and not by_uid["1.2.10"].has_model
    # Same rows in another order, statuses as a mapping: the same list.
    again = build_worklist(list(reversed(rows)), {draft: "draft"})
    assert [e.series_uid for e in again] == [e.series_uid for e in entries]
    assert again[1].status == "draft"


def test_worklist_shows_each_stage_of_the_store(stored):
    names = ("complete", "model", "draft", "interrupted")
    uids = [stored.uid[name] for name in names] + [UNSEEN]
    rows = [row(uid, number=str(n)) for n, uid in enumerate(uids, start=1)]
    entries = build_worklist(rows, stored.store.series())
    assert [e.series_uid for e in entries] == uids
    got = {name: entries[n] for n, name in enumerate((*names, "unseen"))}

    # The status is the latest reader revision's; the reader and time the newest revision's.
    newest = stored.revisions["complete"][-1]
    assert got["complete"].status == "complete" and got["complete"].done
    assert got["complete"].revisions == 3 and got["complete"].has_model
    assert (got["complete"].last_reader, got["complete"].last_time) == ("pipeline", newest.created)
    # A model revision alone does not start a series; the table says a model result is there.
    assert got["model"].status == "not started" and got["model"].has_model
    assert got["model"].revisions == 1 and got["model"].cells()[5] == "not started (model)"
    assert got["draft"].cells()[5:] == ("draft", "dr a")
    for name in ("interrupted", "unseen"):  # a failed first save: known, but nothing in it
        assert (got[name].status, got[name].revisions, got[name].last_reader) == (
            "not started",
            0,
            "",
        )
        assert got[name].cells()[5] == "not started"
    assert worklist.count_by_status(entries) == {
        "not started": 3,
        "draft": 1,
        "complete": 1,
        "approved": 0,
    }
    # Next: skips the completed series, wraps around past it.
    assert next_to_do(entries).series_uid == stored.uid["model"]
    assert next_to_do(entries, after=stored.uid["model"]).series_uid == stored.uid["draft"]
    assert next_to_do(entries, after=UNSEEN).series_uid == stored.uid["model"]


def test_duplicate_rows_count_once_and_bad_status_is_refused():
    entries = build_worklist([row("1.2"), row("1.2")])
    assert len(entries) == 1
    with pytest.raises(DeepLiverError, match="unknown status 'finished'"):
        build_worklist([row("1.2")], {"1.2": "finished"})


def test_cells_follow_the_columns():
    entry = WorklistEntry(row("1.2", number="3"), "not started", has_model=True)
    cells = entry.cells()
    assert len(cells) == len(worklist.COLUMNS)
    assert cells[0] == "Doe, Jane (P1)"
    assert cells[1] == "2024-01-02"
    assert cells[2] == "3: Abdomen portal"
    assert cells[5] == "not started (model)"


# --- filters -------------------------------------------------------------------------------


def test_filters_modality_done_and_text():
    rows = [
        row("1.1", description="Liver arterial"),
        row("1.2", modality="MR", description="T1"),
        row("1.3", patient="Smith^Bob", pid="X7", description="Portal"),
        row("1.4", description="Delayed"),
    ]
    entries = build_worklist(rows, {"1.1": "complete", "1.4": "approved", "1.3": "draft"})
    uids = lambda shown: [e.series_uid for e in shown]  # noqa: E731
    assert uids(WorklistFilter().apply(entries)) == ["1.1", "1.4", "1.3"]
    assert uids(WorklistFilter(ct_only=False).apply(entries)) == ["1.1", "1.2", "1.4", "1.3"]
    assert uids(WorklistFilter(not_done_only=True).apply(entries)) == ["1.3"]
    assert uids(WorklistFilter(text="smith portal").apply(entries)) == ["1.3"]
    assert uids(WorklistFilter(text="x7").apply(entries)) == ["1.3"]
    assert uids(WorklistFilter(text="LIVER").apply(entries)) == ["1.1"]
    assert uids(WorklistFilter(text="doe, jane").apply(entries)) == ["1.1", "1.4"]
    assert WorklistFilter(text="nobody").apply(entries) == []


# --- next series ---------------------------------------------------------------------------


def entries_with(*statuses):
    rows = [row(f"1.{i}", number=str(i)) for i in range(1, len(statuses) + 1)]
    return build_worklist(rows, {f"1.{i}": s for i, s in enumerate(statuses, start=1)})


def test_next_skips_done_and_wraps_around():
    entries = entries_with("complete", "not started", "approved", "draft", "complete")
    assert next_to_do(entries).series_uid == "1.2"
    assert next_to_do(entries, after="1.2").series_uid == "1.4"
    assert next_to_do(entries, after="1.4").series_uid == "1.2"  # wraps past the done ones
    assert next_to_do(entries, after="1.3").series_uid == "1.4"
    assert next_to_do(entries, after="9.9").series_uid == "1.2"  # not listed: from the top


def test_next_never_returns_the_current_series_and_may_be_none():
    only = entries_with("complete", "draft", "complete")
    assert next_to_do(only, after="1.2") is None
    assert next_to_do(only).series_uid == "1.2"
    assert next_to_do(entries_with("complete", "approved")) is None
    assert next_to_do([]) is None


def test_summary_counts_statuses():
    entries = entries_with("complete", "not started", "draft", "draft")
    assert worklist.count_by_status(entries) == {
        "not started": 1,
        "draft": 2,
        "complete": 1,
        "approved": 0,
    }
    text = worklist.summary_text(entries[:2], len(entries))
    assert text == "2 of 4 series: 1 not started, 0 draft, 1 complete, 0 approved"


# --- review rules --------------------------------------------------------------------------


@pytest.fixture
def grid():
    direction = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    return Grid(
        (4, 5, 6), origin=(10.0, -20.0, 30.0), spacing=(0.5, 0.75, 2.0), direction=direction
    )


def test_tumor_names_take_the_smallest_free_number():
    assert review.next_tumor_name([]) == "Tumor 1"
    assert review.next_tumor_name(["Liver", "Tumor 1", "Tumor 3"]) == "Tumor 2"
    made = review.new_segment(["Liver", "Tumor 1"])
    assert (made.name, made.structure) == ("Tumor 2", TUMOR)
    assert review.new_segment(["Tumor 1"], LIVER).name == "Liver"
    with pytest.raises(DeepLiverError, match="already a Liver"):
        review.new_segment(["Liver"], LIVER)


def test_segment_order_and_empty_start(grid):
    names = ["Tumor 10", "Other", "Tumor 2", "Liver"]
    assert sorted(names, key=review.segment_order_key) == ["Liver", "Tumor 2", "Tumor 10", "Other"]
    start = review.empty_review(grid)
    assert [s.name for s in start.segments] == ["Liver"]
    assert start.masks.shape == (1, *grid.shape) and not start.masks.any()
    masks = np.zeros((2, *grid.shape), bool)
    masks[1, 0, 0, 0] = True
    mixed = Segmentation(grid, (Segment("Tumor 1", TUMOR), Segment("Liver", LIVER)), masks)
    put = review.ordered(mixed)
    assert [s.name for s in put.segments] == ["Liver", "Tumor 1"]
    assert put.mask("Liver")[0, 0, 0] and not put.mask("Tumor 1").any()


def test_colours_round_trip_and_segments_from_slicer():
    for structure in (LIVER, TUMOR):
        assert review.color_int(review.color_float(structure.color)) == structure.color
    from deepliver.annotation.terminology import terminology_entry

    liver = review.segment_from_slicer("Liver", terminology_entry(LIVER))
    assert liver == Segment("Liver", LIVER)
    # Structure from the codes, whatever the name; the name when there are no codes.
    coded = review.segment_from_slicer("Lesion A", terminology_entry(TUMOR))
    assert coded.structure == TUMOR
    named = review.segment_from_slicer("Tumor 4", "", review.color_float(TUMOR.color))
    assert named == Segment("Tumor 4", TUMOR)  # the structure's own colour is not repeated
    recoloured = review.segment_from_slicer("Tumor 5", "", (1.0, 0.0, 0.0))
    assert recoloured.color == (255, 0, 0)
    with pytest.raises(DeepLiverError, match="'Spleen' is neither liver nor tumor"):
        review.segment_from_slicer("Spleen")


def test_mask_box_covers_voxel_edges_in_lps(grid):
    mask = np.zeros(grid.shape, bool)
    mask[1:3, 2, 1:4] = True  # k 1..2, j 2, i 1..3
    low, high = review.mask_box(grid, mask)
    corners = np.array(
        [[i, j, k] for i in (0.5, 3.5) for j in (1.5, 2.5) for k in (0.5, 2.5)], dtype=float
    )
    points = grid.index_to_physical(corners)
    np.testing.assert_allclose(low, points.min(axis=0))
    np.testing.assert_allclose(high, points.max(axis=0))
    # Every voxel centre of the mask lies inside the box.
    centres = grid.index_to_physical(np.argwhere(mask)[:, ::-1].astype(float))
    assert np.all(centres >= low) and np.all(centres <= high)
    assert review.mask_box(grid, np.zeros(grid.shape, bool)) is None
    with pytest.raises(DeepLiverError, match="not on a grid"):
        review.mask_box(grid, np.zeros((1, 2, 3), bool))


def test_box_records(grid):
    masks = np.zeros((2, *grid.shape), bool)
    masks[1, 2, 2, 2] = True
    seg = Segmentation(grid, (Segment("Liver", LIVER), Segment("Tumor 1", TUMOR)), masks)
    assert review.segment_box(grid, seg, "Liver") is None
    record = review.segment_box(grid, seg, "Tumor 1")
    assert record["segment"] == "Tumor 1"
    np.testing.assert_allclose(review.box_center(record), grid.index_to_physical([2, 2, 2]))
    with pytest.raises(DeepLiverError, match="must not exceed"):
        review.box_record("Tumor 1", [1, 0, 0], [0, 0, 0])
    boxes = [record, {"segment": "Tumor 9", "min": [0, 0, 0], "max": [1, 1, 1]}]
    assert review.boxes_for(boxes, ["Liver", "Tumor 1"]) == [record]
    stored_box = LesionBox("Tumor 1", (0, 0, 0), (1, 2, 3))  # as a store revision holds it
    assert review.boxes_for([stored_box], ["Tumor 1"])[0]["max"] == [1.0, 2.0, 3.0]


def test_restore_prefers_the_reader_then_the_model(stored):
    store, uid = stored.store, stored.uid
    in_store = {s.identity.series_uid for s in store.series()}  # as the review session asks
    assert in_store == {uid[name] for name in ("complete", "model", "draft", "interrupted")}

    # The latest reader revision, though a model revision came after it.
    _, reader_final, model_newer = stored.revisions["complete"]
    both = review.restore_choice(store, uid["complete"], uid["complete"] in in_store)
    assert (both.revision, both.source) == (reader_final, "manual")
    assert model_newer.number > reader_final.number
    assert both.describe() == "restored the reader's revision 2 by dr a"
    restored = store.load(both.revision, stored.series["complete"].identity)
    assert [s.name for s in restored.segments] == ["Liver", "Tumor 1"]
    np.testing.assert_array_equal(
        restored.mask("Tumor 1"), stored.series["complete"].segmentation.mask("Tumor 1")
    )
    # Its box comes back with it, for the segments that are there.
    box = tumor_box(stored.series["complete"])
    expected = [review.box_record("Tumor 1", box["min"], box["max"])]
    assert review.boxes_for(both.revision.boxes, ["Liver", "Tumor 1"]) == expected
    assert review.boxes_for(both.revision.boxes, ["Liver"]) == []

    only_model = review.restore_choice(store, uid["model"], uid["model"] in in_store)
    assert (only_model.revision, only_model.source) == (stored.revisions["model"][0], "model")
    assert only_model.describe() == "restored the model's revision 1"

    # Known to the store (its first save failed), but nothing to restore: an empty Liver.
    nothing = review.restore_choice(store, uid["interrupted"], uid["interrupted"] in in_store)
    assert store.revisions(uid["interrupted"]) == []
    assert (nothing.revision, nothing.source) == (None, "empty")
    assert "empty Liver" in nothing.describe()


def test_a_series_the_store_never_saw_is_not_looked_up(stored):
    assert UNSEEN not in {s.identity.series_uid for s in stored.store.series()}
    unseen = review.restore_choice(stored.store, UNSEEN, in_store=False)  # raises nothing
    assert (unseen.revision, unseen.source) == (None, "empty")
    assert "empty Liver" in unseen.describe()
    # Had it been looked up, the real store would have refused: it has no record of the UID.
    with pytest.raises(DeepLiverError, match="not in the annotation store"):
        review.restore_choice(stored.store, UNSEEN)


# --- glue: Slicer-free parts ---------------------------------------------------------------


def test_identity_of_a_loaded_series(grid):
    uids = tuple(f"1.2.1.5.{k}" for k in range(grid.shape[0]))
    loaded = SlicerDicomIdentity("1.2.1", "1.2.1.5", uids)
    made = dicom_database.identity_from_parts(loaded, row("1.2.1.5", description="Portal"), grid)
    expected = SeriesIdentity.build(
        patient_id="P1",
        study_uid="1.2.1",
        series_uid="1.2.1.5",
        modality="CT",
        description="Portal",
        sop_uids=uids,
        grid=grid,
    )
    assert made == expected
    assert made.fingerprint == loaded.fingerprint(grid)
    with pytest.raises(ValueError, match="not 9.9"):
        dicom_database.identity_from_parts(loaded, row("9.9"), grid)
    with pytest.raises(ValueError, match="2 SOP Instance UIDs for 4 slices"):
        dicom_database.identity_from_parts(SlicerDicomIdentity("1", "1.5", uids[:2]), None, grid)


def test_segment_colours_and_masks_for_slicer():
    assert segmentations.segment_color(Segment("Liver", LIVER)) == LIVER.color_float
    assert segmentations.segment_color(Segment("Tumor 1", TUMOR, (255, 0, 0))) == (1.0, 0.0, 0.0)
    mask = segmentations.binary_mask(np.array([[[0, 2], [True, False]]]))
    assert mask.dtype == np.uint8 and mask.tolist() == [[[0, 1], [1, 0]]]
    assert mask.flags["C_CONTIGUOUS"]


def test_review_shortcuts_avoid_slicers_own():
    # Slicer 5.12 main window, module toolbar, markups toolbar, sequences and view shortcuts.
    slicer_keys = {f"Ctrl+{k}" for k in "SOWFHB0123456`"} | {
        "Ctrl+Shift+A",
        "Ctrl+Shift+T",
        "Ctrl+Shift+Space",
        "Ctrl+Shift+Left",
        "Ctrl+Shift+Right",
        "Ctrl+Shift+Down",
    }
    keys = list(review_glue.SHORTCUTS.values())
    assert len(set(keys)) == len(keys)
    assert not set(keys) & slicer_keys
    assert set(review_glue.SHORTCUTS) == {"save draft", "complete", "save and next"}
    assert "Ctrl+Shift+S: save draft" in review_glue.shortcut_help()


def test_editor_effects_are_the_ones_named_in_slicer():
    assert review_glue.EFFECTS == (
        "Paint",
        "Draw",
        "Erase",
        "Threshold",
        "Islands",
        "Fill between slices",
        "Smoothing",
    )
    assert review_glue.roi_name("Tumor 2") == "Tumor 2 box"
