"""The `deepliver` command as a user runs it: real processes, real files, one-line errors."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from cli_helpers import deepliver

from deepliver.io.dicom_read import read_series
from deepliver.io.dicom_write import write_ct_series
from deepliver.io.image_files import read_image
from deepliver.volume import Volume


def small_ct(seed: int, shape=(6, 16, 20)) -> Volume:
    rng = np.random.default_rng(seed)
    array = rng.integers(-1000, 1500, shape).astype(np.int16)
    return Volume.from_array(array, origin=(-10.5, 3.25, 100.0), spacing=(0.8, 0.8, 2.5))


def test_help_lists_every_command():
    out = deepliver("--help").stdout
    for command in ("info", "convert", "phantom", "demo", "store"):
        assert command in out


def test_phantom_writes_dicom_and_nifti_that_agree(tmp_path):
    out = tmp_path / "phantom"
    deepliver(
        "phantom",
        out,
        "--seed",
        5,
        "--size",
        64,
        64,
        24,
        "--tumors",
        2,
        2,
        "--orientation",
        "oblique",
    )
    record = json.loads((out / "phantom.json").read_text())
    assert len(record["tumors"]) == 2
    ct = read_image(out / "ct.nii.gz")
    labels = read_image(out / "labels.nii.gz")
    assert ct.grid.same_as(labels.grid)
    assert set(np.unique(labels.array)) == {0, 1, 2}
    from_dicom, identity = read_series(out / "dicom")
    assert identity.series_uid == record["series"]["series_uid"]
    assert identity.fingerprint == record["series"]["fingerprint"]
    np.testing.assert_array_equal(from_dicom.array, ct.array)
    assert from_dicom.grid.same_as(ct.grid), from_dicom.grid.describe_difference(ct.grid)
    assert not np.allclose(ct.direction, np.eye(3))  # oblique, and still lined up


def test_info_lists_series_and_problems_without_stopping(tmp_path):
    write_ct_series(small_ct(1), tmp_path / "a", description="first")
    write_ct_series(small_ct(2), tmp_path / "b", description="second")
    (tmp_path / "notes.txt").write_text("hello")
    good = (tmp_path / "a" / "IM00003.dcm").read_bytes()
    (tmp_path / "a" / "broken.dcm").write_bytes(good[:-100])  # cut inside the pixel data
    text = deepliver("info", tmp_path).stdout
    assert "2 image series found" in text
    assert "first" in text and "second" in text
    assert "notes.txt: not a DICOM file" in text
    assert "broken.dcm" in text and "truncated" in text
    listing = json.loads(deepliver("info", tmp_path, "--json").stdout)
    assert sorted(s["description"] for s in listing["series"]) == ["first", "second"]
    assert [s["size"] for s in listing["series"]] == [[20, 16, 6], [20, 16, 6]]
    assert listing["series"][0]["spacing"] == [0.8, 0.8, 2.5]
    assert listing["series"][0]["orientation"] == "axial"


def test_convert_picks_the_series_by_uid_and_keeps_geometry(tmp_path):
    first = write_ct_series(small_ct(1), tmp_path / "in" / "a")
    second = write_ct_series(small_ct(2), tmp_path / "in" / "b")
    refused = deepliver("convert", tmp_path / "in", tmp_path / "x.nii.gz", expect=1)
    assert refused.stderr.count("\n") == 1 and refused.stderr.startswith("deepliver: error:")
    assert first.series_uid in refused.stderr and second.series_uid in refused.stderr
    assert "choose one with --series" in refused.stderr
    out = tmp_path / "b.nrrd"
    deepliver("convert", tmp_path / "in", out, "--series", second.series_uid)
    volume = read_image(out)
    expected = small_ct(2)
    np.testing.assert_array_equal(volume.array, expected.array)
    assert volume.grid.same_as(expected.grid)


def test_a_series_with_a_missing_slice_needs_allow_gaps(tmp_path):
    write_ct_series(small_ct(3), tmp_path / "in")
    (tmp_path / "in" / "IM00003.dcm").unlink()
    refused = deepliver("convert", tmp_path / "in", tmp_path / "x.nii.gz", expect=1)
    assert "missing" in refused.stderr and not (tmp_path / "x.nii.gz").exists()
    deepliver("convert", tmp_path / "in", tmp_path / "x.nii.gz", "--allow-gaps")
    assert read_image(tmp_path / "x.nii.gz").shape == (6, 16, 20)


def test_errors_are_one_line_naming_the_path(tmp_path):
    missing = deepliver("info", tmp_path / "nowhere", expect=1)
    assert (
        missing.stderr.strip()
        == f"deepliver: error: {tmp_path / 'nowhere'}: no such file or folder"
    )
    empty = deepliver("convert", tmp_path, tmp_path / "x.nii.gz", expect=1)
    assert str(tmp_path) in empty.stderr and empty.stderr.count("\n") == 1
    bad_option = deepliver("phantom", tmp_path / "p", "--size", 0, 64, 64, expect=1)
    assert "size" in bad_option.stderr and bad_option.stderr.count("\n") == 1


def test_real_series_without_uids_is_listed_and_converted(tmp_path, real_data):
    folder = tmp_path / "siemens"
    shutil.copytree(real_data / "siemens_ct_jpeg2000", folder)
    listing = json.loads(deepliver("info", folder, "--json").stdout)
    (series,) = listing["series"]
    assert series["series"].startswith("NO-SERIES-UID-")
    assert any(p["kind"] == "missing_uids" for p in series["problems"])
    done = deepliver("convert", folder, tmp_path / "ct.nii.gz", "--series", series["series"])
    assert f"ct.nii.gz: {folder}, 512 x 512 x 20 voxels" in done.stdout  # not "series , ..."
    assert read_image(tmp_path / "ct.nii.gz").shape == (20, 512, 512)


def test_demo_segments_a_phantom_and_finds_its_liver(tmp_path):
    out = deepliver("demo", tmp_path / "demo").stdout
    assert "liver Dice" in out
    results = tmp_path / "demo" / "results"
    truth = read_image(tmp_path / "demo" / "truth" / "labels.nii.gz")
    found = read_image(results / "labels.nii.gz")
    _, identity = read_series(tmp_path / "demo" / "dicom")
    assert found.grid.same_as(truth.grid)
    overlap = np.logical_and(found.array > 0, truth.array > 0).sum()
    dice = 2 * overlap / ((found.array > 0).sum() + (truth.array > 0).sum())
    assert dice >= 0.9, dice
    summary = json.loads((results / "summary.json").read_text())
    assert summary["series"]["series_uid"] == identity.series_uid
    assert summary["liver_volume_ml"] > 500
    for name in ("labels.seg.nrrd", "labels.dcm", "lesions.csv", "lesions.json", "overview.png"):
        assert (results / name).is_file(), name
    again = deepliver("demo", tmp_path / "demo", expect=1)
    assert "already holds files" in again.stderr


@pytest.mark.parametrize("command", ["info", "convert", "phantom", "segment", "demo"])
def test_each_command_has_help(command):
    assert "usage: deepliver " + command in deepliver(command, "--help").stdout


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path):
    for number in range(3000):  # ~200 kB of "not a DICOM file" lines: more than a pipe holds
        (tmp_path / f"note{number:05d}.txt").write_text("x")
    command = f"{sys.executable} -m deepliver info {tmp_path} --progress none | head -n 2"
    result = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=300)
    assert result.stdout.splitlines() == ["0 image series found", ""]
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr
