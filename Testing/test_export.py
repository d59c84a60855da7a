"""`deepliver export`: real DICOM series, a real annotation store, real NIfTI files read back."""

from __future__ import annotations

import gzip
import json
import shutil
import stat
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from cli_helpers import deepliver
from store_helpers import StoreSeries

from deepliver.annotation.segmentation import Segmentation
from deepliver.annotation.store import AnnotationStore
from deepliver.cli import main
from deepliver.export.pseudonyms import Pseudonyms
from deepliver.io.dicom_read import read_series
from deepliver.io.dicom_write import write_ct_series
from deepliver.phantom import PhantomSpec, make_phantom
from deepliver.volume import Volume

BIRTH_DATE, STUDY_DATE, ACCESSION = "19610203", "20190415", "ACC-777"
MODEL = {"kind": "model", "name": "liver-cascade", "version": "0.3.1"}
# name -> (seed, Patient ID, Patient Name)
SERIES = {
    "a": (31, "PID-12345", "DOE^JANE"),
    "b": (32, "PID-12345", "DOE^JANE"),
    "c": (33, "PID-22222", "ROE^RICHARD"),
    "d": (34, "PID-33333", "POE^EDGAR"),
}


def _series(folder: Path, seed: int, patient_id: str, patient_name: str) -> StoreSeries:
    phantom = make_phantom(PhantomSpec(seed=seed, size=(32, 32, 12), n_tumors=(2, 2)))
    write_ct_series(
        phantom.ct,
        folder,
        patient_id=patient_id,
        patient_name=patient_name,
        uid_entropy=f"export-{seed}",
    )
    for path in folder.glob("*.dcm"):  # what write_ct_series leaves blank or sets to today
        dataset = pydicom.dcmread(path)
        dataset.PatientBirthDate = BIRTH_DATE
        dataset.StudyDate = STUDY_DATE
        dataset.AccessionNumber = ACCESSION
        dataset.save_as(path)
    volume, identity = read_series(folder)
    labels = Volume(phantom.labels.array, volume.grid)
    return StoreSeries(folder, identity, volume.grid, labels, Segmentation.from_label_map(labels))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """DICOM for 3 patients (P1 with two series) and a store: a complete, b approved,
    c draft then complete then a model revision, d draft only."""
    root = tmp_path_factory.mktemp("export")
    series = {n: _series(root / "dicom" / n, *SERIES[n]) for n in SERIES}
    store = AnnotationStore(root / "store")

    def save(name, status, **options):
        s = series[name]
        store.save(s.identity, s.grid, s.segmentation, reader="Dr. Ada", status=status, **options)

    save("a", "complete")
    save("b", "draft")
    save("b", "approved")
    save("c", "draft")
    save("c", "complete")
    save("c", "draft", source=MODEL)
    save("d", "draft")
    return root, series


def export(root: Path, out: Path, *options, expect: int = 0, capsys=None) -> str:
    """Run `deepliver export` in this process; its stdout and stderr."""
    argv = ["export", "--store", root / "store", "--dicom", root / "dicom", "-o", out]
    argv += ["--key-file", root / "key", *options, "--progress", "none"]
    assert main([str(a) for a in argv]) == expect
    if capsys is None:
        return ""
    captured = capsys.readouterr()
    return captured.out + captured.err


def case_of(root: Path, series: StoreSeries) -> str:
    return Pseudonyms((root / "key").read_bytes()).case(series.identity.series_uid)


def manifest(out: Path) -> dict:
    return {e["case"]: e for e in json.loads((out / "manifest.json").read_text())["cases"]}


def stamps(out: Path) -> dict:
    """(inode, mtime) of every file: a file rewritten atomically gets a new inode."""
    return {
        p.relative_to(out): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in out.rglob("*")
        if p.is_file()
    }


@pytest.fixture(scope="module")
def exported(base):
    root, series = base
    export(root, root / "out")
    return root, series, root / "out"


def test_exports_exactly_the_complete_series_with_their_images_and_labels(exported):
    root, series, out = exported
    cases = manifest(out)
    assert set(cases) == {case_of(root, series[n]) for n in "abc"}
    description = json.loads((out / "dataset.json").read_text())
    assert description["labels"] == {"0": "background", "1": "liver", "2": "tumor"}
    assert description["modality"] == {"0": "CT"} and description["tensorImageSize"] == "3D"
    assert description["numTraining"] + description["numTest"] == 3
    assert len(description["training"]) == description["numTraining"]
    assert "labelsTs" in description["description"]
    for entry in description["training"]:  # nnU-Net style: listed without the _0000 suffix
        assert (out / entry["image"].replace(".nii.gz", "_0000.nii.gz")).is_file()
        assert (out / entry["label"]).is_file()
    for name in "abc":
        entry = cases[case_of(root, series[name])]
        assert entry["record"].startswith("rev-") and len(entry["inputs"]) == 64
        image = sitk.ReadImage(str(out / entry["image"]["path"]))
        labels = sitk.ReadImage(str(out / entry["label"]["path"]))
        volume, _ = read_series(series[name].folder)
        assert sitk.GetArrayFromImage(image).dtype == np.int16
        np.testing.assert_array_equal(sitk.GetArrayFromImage(image), volume.array)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(labels), series[name].labels.array)
        for written in (image, labels):
            grid = series[name].grid
            np.testing.assert_allclose(written.GetOrigin(), grid.origin, atol=1e-4)
            np.testing.assert_allclose(written.GetSpacing(), grid.spacing, atol=1e-5)
            np.testing.assert_allclose(written.GetDirection(), grid.direction.ravel(), atol=1e-6)


def test_status_approved_exports_the_approved_series_only(base, tmp_path, capsys):
    root, series = base
    text = export(root, tmp_path / "out", "--status", "approved", capsys=capsys)
    assert set(manifest(tmp_path / "out")) == {case_of(root, series["b"])}
    assert "one patient only: every case goes to training" in text
    assert f"mapping is in {tmp_path / 'out.mapping.json'}" in text
    description = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert description["numTraining"] == 1 and description["numTest"] == 0


def test_no_identifier_in_any_file_name_or_byte_of_the_dataset(exported):
    root, series, out = exported
    forbidden = {BIRTH_DATE, STUDY_DATE, ACCESSION}
    for _seed, patient_id, patient_name in SERIES.values():
        forbidden |= {patient_id, patient_name}
    for s in series.values():
        forbidden |= {s.identity.study_uid, s.identity.series_uid, *s.identity.sop_uids}
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) == 2 * 3 + 2
    for path in files:
        name = str(path.relative_to(out))
        contents = [path.read_bytes()]
        if path.name.endswith(".gz"):
            contents.append(gzip.decompress(contents[0]))
            header = contents[1][:352]
            assert header[148:228] == bytes(80) and header[228:252] == bytes(24), name
            assert contents[0][3] & 0x08 == 0, name  # no file name in the gzip header
        for text in forbidden:
            assert text not in name
            for content in contents:
                assert text.encode() not in content, f"{text} in {name}"
    mapping_path = root / "out.mapping.json"
    assert stat.S_IMODE(mapping_path.stat().st_mode) == 0o600
    mapping = json.loads(mapping_path.read_text())["pseudonyms"]
    first = mapping[case_of(root, series["a"]).removeprefix("liver_")]
    assert first["patient_id"] == "PID-12345"
    assert first["series_uid"] == series["a"].identity.series_uid
    assert first["study_uid"] == series["a"].identity.study_uid and first["revision"] == 1


def test_split_keeps_a_patients_series_together_and_is_reproducible(exported, tmp_path):
    root, series, out = exported
    cases = manifest(out)
    first, second = (cases[case_of(root, series[n])] for n in "ab")
    assert first["split"] == second["split"] and first["patient"] == second["patient"]
    assert {e["split"] for e in cases.values()} == {"training", "test"}
    for entry in cases.values():
        folder = "imagesTr" if entry["split"] == "training" else "imagesTs"
        assert entry["image"]["path"].startswith(folder)
    export(root, tmp_path / "again")
    assert {c: e["split"] for c, e in manifest(tmp_path / "again").items()} == {
        c: e["split"] for c, e in cases.items()
    }
    assert (
        json.loads((tmp_path / "again" / "dataset.json").read_text())["test"]
        == json.loads((out / "dataset.json").read_text())["test"]
    )


def test_export_again_rewrites_only_what_changed(base, tmp_path, capsys):
    root, series = base
    shutil.copytree(root, tmp_path / "copy")
    root = tmp_path / "copy"
    out = root / "out"
    before = stamps(out)
    text = export(root, out, capsys=capsys)
    assert stamps(out) == before
    assert text.count(": unchanged") == 3 and "0 written, 3 unchanged, 0 removed" in text

    changed = series["c"].segmentation.without_segment("Tumor 2")
    AnnotationStore(root / "store").save(
        series["c"].identity, series["c"].grid, changed, reader="Dr. Bo", status="complete"
    )
    text = export(root, out, capsys=capsys)
    assert "1 written, 2 unchanged" in text
    after = stamps(out)
    entry = manifest(out)[case_of(root, series["c"])]
    rewritten = {path for path in after if after[path] != before.get(path)}
    assert rewritten == {Path(entry["image"]["path"]), Path(entry["label"]["path"])} | {
        Path("manifest.json")
    }
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / entry["label"]["path"])))
    np.testing.assert_array_equal(labels, changed.label_map().array)
    assert entry["revision"] == 4

    text = export(root, out, "--status", "approved", capsys=capsys)
    assert "2 removed" in text
    assert set(manifest(out)) == {case_of(root, series["b"])}
    assert len([p for p in out.rglob("*.nii.gz")]) == 2
    assert json.loads((out / "dataset.json").read_text())["numTraining"] == 1


def test_changed_dicom_files_are_refused_unless_accepted(base, tmp_path, capsys):
    root, series = base
    shutil.copytree(root / "dicom", tmp_path / "dicom")
    shutil.copytree(root / "store", tmp_path / "store")
    shutil.copy(root / "key", tmp_path / "key")
    path = sorted((tmp_path / "dicom" / "a").glob("*.dcm"))[3]
    dataset = pydicom.dcmread(path)
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5.6"
    dataset.save_as(path)

    text = export(tmp_path, tmp_path / "out", expect=1, capsys=capsys)
    assert series["a"].identity.series_uid in text and "changed since it was annotated" in text
    assert not (tmp_path / "out").exists()
    text = export(tmp_path, tmp_path / "out", "--accept-changed", capsys=capsys)
    assert "exported anyway" in text
    assert case_of(tmp_path, series["a"]) in manifest(tmp_path / "out")


def test_empty_selection_is_refused_and_nothing_written(base, tmp_path, capsys):
    root, series = base
    d = series["d"]
    AnnotationStore(tmp_path / "store").save(
        d.identity, d.grid, d.segmentation, reader="Dr. Ada", status="draft"
    )
    shutil.copytree(root / "dicom", tmp_path / "dicom")
    text = export(tmp_path, tmp_path / "out", expect=1, capsys=capsys)
    assert "no series with status complete or approved in" in text
    assert not (tmp_path / "out").exists() and not (tmp_path / "key").exists()


def test_pseudonyms_are_stable_for_a_key_and_differ_for_another(exported, tmp_path):
    root, series, out = exported
    uid = series["a"].identity.series_uid
    key = (root / "key").read_bytes()
    assert Pseudonyms(key).case(uid) == Pseudonyms(bytes(key)).case(uid)
    assert Pseudonyms(key).case(uid) != Pseudonyms(bytes(32)).case(uid)
    assert len(key) == 32 and stat.S_IMODE((root / "key").stat().st_mode) == 0o600

    other_key = tmp_path / "keys" / "other"
    result = deepliver(
        "export",
        "--store",
        root / "store",
        "--dicom",
        root / "dicom",
        "-o",
        tmp_path / "out",
        "--key-file",
        other_key,
        "--progress",
        "jsonl",
    )
    outputs = json.loads(result.stdout.splitlines()[-1])["outputs"]
    assert len(outputs["written"]) == 3 and not set(outputs["written"]) & set(manifest(out))
    assert Pseudonyms(other_key.read_bytes()).case(uid) in outputs["written"]
    assert outputs["mapping"] == str(tmp_path / "out.mapping.json")


def test_mapping_inside_the_dataset_and_a_foreign_folder_are_refused(exported, tmp_path, capsys):
    root, _, out = exported
    text = export(
        root, tmp_path / "out", "--mapping", tmp_path / "out" / "m.json", expect=1, capsys=capsys
    )
    assert "outside" in text and not (tmp_path / "out").exists()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    text = export(root, tmp_path / "other", expect=1, capsys=capsys)
    assert "not a DeepLiver export" in text


@pytest.mark.parametrize("problem", ["grid", "values"])
def test_labels_off_the_grid_or_with_other_values_are_refused(
    exported, tmp_path, monkeypatch, capsys, problem
):
    root, series, _ = exported
    real_load = AnnotationStore.load

    class Shifted:
        def __init__(self, segmentation):
            self.segmentation = segmentation

        def label_map(self):
            labels = self.segmentation.label_map()
            if problem == "values":
                return labels.with_array(labels.array + 1)
            grid = labels.grid
            moved = type(grid)(grid.shape, grid.origin + 5.0, grid.spacing, grid.direction)
            return Volume(labels.array, moved)

    monkeypatch.setattr(
        AnnotationStore, "load", lambda self, *a, **k: Shifted(real_load(self, *a, **k))
    )
    text = export(root, tmp_path / "out", expect=1, capsys=capsys)
    assert "not on the grid" in text if problem == "grid" else "label values [3]" in text
    assert any(s.identity.series_uid in text for s in series.values())
