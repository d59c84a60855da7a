"""`deepliver store list|show|export` as a user runs it: real processes on a real store."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from cli_helpers import deepliver
from store_helpers import phantom_series, tumor_box

from deepliver.annotation.store import AnnotationStore
from deepliver.io.image_files import read_image
from deepliver.io.seg_nrrd import read_seg_nrrd

MODEL = {"kind": "model", "name": "liver-cascade", "version": "0.3.1"}


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    """A store with two series: one draft + model + complete, one model revision only."""
    base = tmp_path_factory.mktemp("cli-store")
    first = phantom_series(base / "ct1", seed=21, description="Abdomen/../portal")
    second = phantom_series(base / "ct2", seed=22, description="Arterial")
    store = AnnotationStore(base / "store")
    store.save(
        first.identity, first.grid, first.segmentation, reader="Dr. Ada", boxes=[tumor_box(first)]
    )
    store.save(first.identity, first.grid, first.segmentation, reader="auto", source=MODEL)
    store.save(
        first.identity,
        first.grid,
        first.segmentation.without_segment("Tumor 2"),
        reader="Dr. Ada",
        status="complete",
        comment="one lesion",
    )
    store.save(second.identity, second.grid, second.segmentation, reader="auto", source=MODEL)
    return base / "store", first, second


def test_list_shows_every_series_with_its_status(filled):
    root, first, second = filled
    text = deepliver("store", "list", root).stdout
    assert "2 series in" in text
    lines = text.splitlines()
    row = next(line for line in lines if first.identity.series_uid in line)
    assert "complete" in row and "3 (1 model)" in row and "Abdomen/../portal" in row
    row = next(line for line in lines if second.identity.series_uid in line)
    assert "not started" in row and "PHANTOM" in row

    listed = json.loads(deepliver("store", "list", root, "--json").stdout)
    statuses = {s["series"]: s for s in listed["series"]}
    assert statuses[first.identity.series_uid]["status"] == "complete"
    assert statuses[first.identity.series_uid]["revisions"] == 3
    assert statuses[second.identity.series_uid]["has_model"] is True
    assert listed["problems"] == []

    events = deepliver("store", "list", root, "--progress", "jsonl").stdout.splitlines()
    result = json.loads(events[-1])
    assert result["event"] == "result"
    assert len(result["outputs"]["series"]) == 2


def test_show_gives_the_record_segments_boxes_and_history(filled):
    root, first, _ = filled
    uid = first.identity.series_uid
    text = deepliver("store", "show", root, uid).stdout
    assert "History" in text and "Dr. Ada" in text and "liver-cascade 0.3.1" in text
    assert "Revision 3" in text and "Tumor 2" not in text.split("Revision 3")[1]
    assert "one lesion" in text
    text = deepliver("store", "show", root, uid, "--revision", "1").stdout
    assert "Revision 1" in text and "Tumor 1: Liver tumor, label 2" in text
    assert "Lesion boxes (LPS mm)" in text

    shown = json.loads(deepliver("store", "show", root, uid, "--revision", 1, "--json").stdout)
    assert [h["number"] for h in shown["history"]] == [1, 2, 3]
    assert shown["revision"]["boxes"] == [tumor_box(first)]
    assert shown["identity"]["sop_uids"] == list(first.identity.sop_uids)
    assert shown["geometry"]["size"] == [32, 32, 12]


def test_export_nifti_and_seg_nrrd_on_the_series_grid(filled, tmp_path):
    root, first, _ = filled
    uid = first.identity.series_uid
    out = tmp_path / "labels.nii.gz"
    deepliver("store", "export", root, uid, "-o", out, "--format", "nifti", "--revision", 1)
    labels = read_image(out)
    assert labels.grid.same_as(first.grid)
    np.testing.assert_array_equal(labels.array, first.labels.array)

    out = tmp_path / "latest.seg.nrrd"
    text = deepliver("store", "export", root, uid, "-o", out, "--format", "seg-nrrd").stdout
    assert "revision 3" in text  # the newest reader revision by default
    segmentation = read_seg_nrrd(out)
    assert segmentation.grid.same_as(first.grid)
    assert [s.name for s in segmentation.segments] == ["Liver", "Tumor 1"]
    np.testing.assert_array_equal(segmentation.mask("Tumor 1"), first.segmentation.mask("Tumor 1"))


def test_export_dicom_seg_reads_back_onto_the_series(filled, tmp_path):
    from deepliver.io.dicom_seg import read_dicom_seg

    root, first, second = filled
    out = tmp_path / "seg.dcm"
    uid = first.identity.series_uid
    deepliver(
        "store", "export", root, uid, "-o", out, "--format", "dicom-seg", "--dicom", first.folder
    )
    back = read_dicom_seg(out, first.folder)
    assert back.grid.same_as(first.grid)
    for name in ("Liver", "Tumor 1"):
        np.testing.assert_array_equal(back.mask(name), first.segmentation.mask(name))

    # A model revision (the only one of the second series) with --source model.
    out = tmp_path / "model.dcm"
    args = ("-o", out, "--format", "dicom-seg", "--dicom", second.folder, "--source", "model")
    deepliver("store", "export", root, second.identity.series_uid, *args)
    assert read_dicom_seg(out, second.folder).grid.same_as(second.grid)


def test_export_refuses_changed_files_and_bad_requests(filled, tmp_path):
    root, first, second = filled
    uid = first.identity.series_uid
    changed = tmp_path / "changed"
    shutil.copytree(first.folder, changed)
    sorted(changed.iterdir())[0].unlink()
    args = ("-o", tmp_path / "x.nii.gz", "--format", "nifti", "--dicom", changed)
    error = deepliver("store", "export", root, uid, *args, expect=1).stderr
    assert "changed since it was annotated" in error

    out = tmp_path / "x.nii.gz"
    error = deepliver(
        "store", "export", root, second.identity.series_uid, "-o", out, "--format", "nifti",
        expect=1,
    ).stderr  # fmt: skip
    assert "no manual revision" in error
    error = deepliver("store", "export", root, uid, "-o", out, "--format", "dicom-seg", expect=1)
    assert "--dicom" in error.stderr
    error = deepliver("store", "export", root, uid, "-o", tmp_path / "x.nrrd", "--format", "nifti",
                      expect=1).stderr  # fmt: skip
    assert ".nii.gz" in error
    error = deepliver("store", "show", root, "1.2.3", expect=1).stderr
    assert error.strip() == f"deepliver: error: series 1.2.3 is not in the annotation store {root}"
    error = deepliver("store", "show", root, "../etc", expect=1).stderr
    assert "not use it as a folder name" in error
    error = deepliver("store", "show", root, uid, "--revision", 9, expect=1).stderr
    assert "has no revision 9; revisions: [1, 2, 3]" in error
    assert not out.exists()


def test_list_reports_a_broken_record_and_goes_on(tmp_path):
    series = phantom_series(tmp_path / "ct", seed=23)
    store = AnnotationStore(tmp_path / "store")
    revision = store.save(series.identity, series.grid, series.segmentation, reader="A")
    store.save(series.identity, series.grid, series.segmentation, reader="A", status="complete")
    revision.sidecar.write_text("{ hand edited")
    text = deepliver("store", "list", tmp_path / "store").stdout
    assert "1 series in" in text and "1 record(s) could not be read" in text
    assert f"{revision.sidecar}: not valid JSON" in text
    assert "complete" in text


def test_add_labels_from_files_then_export_dicom_seg_onto_the_same_grid(tmp_path):
    from deepliver.io.dicom_seg import read_dicom_seg

    deepliver("phantom", tmp_path / "p", "--seed", 31, "--size", 40, 40, 14, "--tumors", 2, 2)
    store, dicom = tmp_path / "store", tmp_path / "p" / "dicom"
    added = deepliver(
        "store",
        "add",
        store,
        dicom,
        tmp_path / "p" / "labels.nii.gz",
        "--reader",
        "Dr. Ada",
        "--status",
        "complete",
        "--progress",
        "jsonl",
    )
    result = json.loads(added.stdout.splitlines()[-1])["outputs"]
    assert result["revision"] == 1
    listing = json.loads(deepliver("store", "list", store, "--json").stdout)
    (series,) = listing["series"]
    assert series["status"] == "complete" and series["series"] == result["series"]

    seg = tmp_path / "labels.dcm"
    deepliver(
        "store",
        "export",
        store,
        result["series"],
        "-o",
        seg,
        "--format",
        "dicom-seg",
        "--dicom",
        dicom,
    )
    back = read_dicom_seg(seg, dicom).label_map()
    labels = read_image(tmp_path / "p" / "labels.nii.gz")
    assert back.grid.same_as(labels.grid)
    np.testing.assert_array_equal(back.array, labels.array)


def test_add_refuses_labels_on_another_grid(tmp_path):
    deepliver("phantom", tmp_path / "a", "--seed", 32, "--size", 40, 40, 14)
    deepliver("phantom", tmp_path / "b", "--seed", 33, "--size", 40, 40, 12)
    refused = deepliver(
        "store",
        "add",
        tmp_path / "store",
        tmp_path / "a" / "dicom",
        tmp_path / "b" / "labels.nii.gz",
        "--reader",
        "x",
        expect=1,
    )
    assert "labels.nii.gz is not on the grid of its image" in refused.stderr
    assert not (tmp_path / "store").exists()


def test_real_series_add_and_export_or_refuse_by_file(tmp_path, real_data):
    """The GE series' own SEG goes in and comes out as a SEG again (its files carry an empty
    Specific Character Set); the Siemens multi-organ map is refused naming the file and value."""
    from deepliver.io.dicom_seg import read_dicom_seg

    store, ge = tmp_path / "store", real_data / "ge_ct_3slice"
    original = real_data / "ge_ct_3slice_labels" / "liver_seg.dcm"
    added = deepliver("store", "add", store, ge, original, "--reader", "x", "--progress", "jsonl")
    series = json.loads(added.stdout.splitlines()[-1])["outputs"]["series"]
    out = tmp_path / "liver.dcm"
    deepliver("store", "export", store, series, "-o", out, "--format", "dicom-seg", "--dicom", ge)
    back, first = read_dicom_seg(out, ge), read_dicom_seg(original, ge)
    assert back.grid.same_as(first.grid)
    np.testing.assert_array_equal(back.masks, first.masks)

    organs = real_data / "siemens_ct_jpeg2000_labels" / "multilabel.nii.gz"
    siemens = real_data / "siemens_ct_jpeg2000"
    refused = deepliver("store", "add", tmp_path / "s", siemens, organs, "--reader", "x", expect=1)
    assert f"{organs}: no structure has label value 5" in refused.stderr
    assert not (tmp_path / "s").exists()
