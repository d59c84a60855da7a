"""DICOM writing, discovery and reading: round trips, real scanner files and bad input."""

from __future__ import annotations

import json
import logging
import os
import random
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian, generate_uid

from deepliver.errors import DeepLiverError
from deepliver.io.dicom_read import read_series
from deepliver.io.dicom_scan import scan
from deepliver.io.dicom_write import write_ct_series
from deepliver.io.problems import (
    DUPLICATE_SLICES,
    MISSING_SLICES,
    NON_IMAGE,
    NOT_DICOM,
    SPLIT_SERIES,
    TRUNCATED,
    UNEVEN_SPACING,
    UNREADABLE,
)
from deepliver.io.series_identity import SeriesIdentity
from deepliver.volume import Volume


def _rotation(ax: float, ay: float, az: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def phantom(
    shape=(10, 32, 32),
    origin=(-120.5, -80.25, 300.0),
    spacing=(0.75, 0.8, 2.5),
    direction=None,
    low=-1024,
    high=1500,
    seed=0,
) -> Volume:
    rng = np.random.default_rng(seed)
    array = rng.integers(low, high + 1, size=shape).astype(np.int16)
    return Volume.from_array(array, origin, spacing, direction)


def sitk_read(folder: Path) -> Volume:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return Volume.from_sitk(reader.Execute())


def assert_same_geometry(a: Volume, b: Volume) -> None:
    assert a.shape == b.shape
    np.testing.assert_allclose(a.origin, b.origin, atol=1e-3, rtol=0)
    np.testing.assert_allclose(a.spacing, b.spacing, atol=1e-3, rtol=0)
    np.testing.assert_allclose(a.direction, b.direction, atol=1e-6, rtol=0)


def kinds(problems) -> set[str]:
    return {p.kind for p in problems}


def rewrite(path: Path, change) -> None:
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path, enforce_file_format=True)


# --- round trips ------------------------------------------------------------------------------


def test_axial_round_trip_is_exact_and_matches_simpleitk(tmp_path):
    volume = phantom()
    written = write_ct_series(volume, tmp_path, description="round trip")
    assert sorted(p.name for p in tmp_path.iterdir())[:2] == ["IM00001.dcm", "IM00002.dcm"]

    read, identity = read_series(tmp_path)

    assert read.array.dtype == np.int16
    np.testing.assert_array_equal(read.array, volume.array)
    assert_same_geometry(read, volume)
    assert identity == written
    assert identity.description == "round trip" and identity.modality == "CT"
    reference = sitk_read(tmp_path)
    np.testing.assert_array_equal(reference.array, read.array)
    assert_same_geometry(reference, read)


def test_oblique_anisotropic_signed_round_trip(tmp_path):
    direction = _rotation(0.3, -0.2, 0.5)
    volume = phantom(shape=(7, 20, 28), spacing=(0.6, 0.9, 3.3), direction=direction, low=-3024)
    write_ct_series(volume, tmp_path)
    assert pydicom.dcmread(tmp_path / "IM00001.dcm").PixelRepresentation == 1

    read, _ = read_series(tmp_path)

    np.testing.assert_array_equal(read.array, volume.array)
    assert_same_geometry(read, volume)
    reference = sitk_read(tmp_path)
    np.testing.assert_array_equal(reference.array, read.array)
    assert_same_geometry(reference, read)


def test_left_handed_grid_reads_back_with_slices_reversed(tmp_path):
    volume = phantom(direction=np.diag([1.0, 1.0, -1.0]))
    written = write_ct_series(volume, tmp_path)

    read, identity = read_series(tmp_path)

    np.testing.assert_array_equal(read.array, volume.array[::-1])
    np.testing.assert_allclose(read.origin, volume.grid.index_to_physical((0, 0, 9)), atol=1e-3)
    assert identity.fingerprint == written.fingerprint


def test_written_files_are_valid_ct_image_storage(tmp_path):
    write_ct_series(phantom(shape=(2, 8, 8)), tmp_path, patient_id="P7")
    ds = pydicom.dcmread(tmp_path / "IM00002.dcm")
    assert ds.SOPClassUID == pydicom.uid.CTImageStorage
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.Modality == "CT" and ds.PatientID == "P7" and ds.InstanceNumber == 2
    assert (ds.Rows, ds.Columns, ds.BitsAllocated, ds.RescaleSlope) == (8, 8, 16, 1)
    assert float(ds.SpacingBetweenSlices) == pytest.approx(2.5)
    assert pydicom.uid.UID(ds.SOPInstanceUID).is_valid


def test_float_volume_is_rounded_and_huge_values_read_as_float32(tmp_path):
    rng = np.random.default_rng(5)
    volume = rng.integers(-1024, 40000, size=(3, 8, 8)).astype(np.float32) + 0.2
    write_ct_series(Volume.from_array(volume), tmp_path)

    read, _ = read_series(tmp_path)

    assert read.array.dtype == np.float32
    np.testing.assert_array_equal(read.array, np.rint(volume))


def test_rescale_slope_gives_float32_hu(tmp_path):
    volume = phantom(shape=(3, 8, 8))
    write_ct_series(volume, tmp_path)
    for path in tmp_path.iterdir():
        rewrite(path, lambda ds: setattr(ds, "RescaleSlope", 0.5))

    read, _ = read_series(tmp_path)

    assert read.array.dtype == np.float32
    stored = volume.array.astype(np.float32) + 1024
    np.testing.assert_array_equal(read.array, stored * 0.5 - 1024)


def test_implicit_vr_and_12_bit_stored_pixels_with_junk_high_bits(tmp_path):
    volume = phantom(shape=(3, 8, 8), high=3071)
    write_ct_series(volume, tmp_path)

    def to_implicit_12_bit(ds):
        stored = ds.pixel_array.astype(np.uint16) | np.uint16(0xA000)  # bits above 12 are junk
        ds.BitsStored, ds.HighBit = 12, 11
        ds.PixelData = stored.tobytes()
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian

    for path in tmp_path.iterdir():
        rewrite(path, to_implicit_12_bit)

    read, _ = read_series(tmp_path)

    np.testing.assert_array_equal(read.array, volume.array)


def test_big_endian_pixels(tmp_path):
    volume = phantom(shape=(3, 8, 8), low=-2000, high=2000)
    write_ct_series(volume, tmp_path)

    def to_big_endian(ds):
        ds.PixelData = ds.pixel_array.astype(">i2").tobytes()
        ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian

    for path in tmp_path.iterdir():
        ds = pydicom.dcmread(path)
        to_big_endian(ds)
        pydicom.dcmwrite(path, ds, implicit_vr=False, little_endian=False, force_encoding=True)

    read, _ = read_series(tmp_path)

    np.testing.assert_array_equal(read.array, volume.array)


def test_sorting_is_by_position_not_file_name_or_instance_number(tmp_path):
    volume = phantom(direction=_rotation(0.1, 0.2, -0.3))
    written = write_ct_series(volume, tmp_path)
    paths = sorted(tmp_path.iterdir())
    names = [f"x{n:03d}.dcm" for n in range(len(paths))]
    random.Random(3).shuffle(names)
    for number, (path, name) in enumerate(zip(paths, names, strict=True)):
        rewrite(path, lambda ds, n=number: setattr(ds, "InstanceNumber", 100 - 7 * n % 11))
        path.rename(tmp_path / name)

    read, identity = read_series(tmp_path)

    np.testing.assert_array_equal(read.array, volume.array)
    assert identity.sop_uids == written.sop_uids
    assert identity.fingerprint == written.fingerprint


# --- identity -----------------------------------------------------------------------------------


def test_uids_are_deterministic_with_entropy(tmp_path):
    volume = phantom()
    first = write_ct_series(volume, tmp_path / "a", uid_entropy="seed-1")
    again = write_ct_series(volume, tmp_path / "b", uid_entropy="seed-1")
    other = write_ct_series(volume, tmp_path / "c", uid_entropy="seed-2")
    random_uids = write_ct_series(volume, tmp_path / "d")

    assert first == again
    assert other.series_uid != first.series_uid and other.fingerprint != first.fingerprint
    assert random_uids.sop_uids[0] != first.sop_uids[0]
    assert len(set(first.sop_uids)) == len(first.sop_uids)


def test_fingerprint_changes_with_missing_slice_or_geometry(tmp_path):
    volume = phantom()
    written = write_ct_series(volume, tmp_path / "a", uid_entropy="fp")
    _, again = read_series(tmp_path / "a")
    moved = phantom(origin=(-120.5, -80.25, 301.0))
    shifted = write_ct_series(moved, tmp_path / "b", uid_entropy="fp")
    (tmp_path / "a" / "IM00005.dcm").unlink()
    _, gappy = read_series(tmp_path / "a", allow_gaps=True)

    assert again.fingerprint == written.fingerprint
    assert shifted.sop_uids == written.sop_uids
    assert shifted.fingerprint != written.fingerprint
    assert gappy.fingerprint != written.fingerprint


def test_identity_round_trips_through_json(tmp_path):
    written = write_ct_series(phantom(shape=(2, 4, 4)), tmp_path)
    restored = SeriesIdentity.from_dict(json.loads(json.dumps(written.to_dict())))
    assert restored == written
    assert len(restored.fingerprint) == 64


# --- real scanner files ---------------------------------------------------------------------


def test_siemens_jpeg2000_matches_simpleitk(real_data):
    folder = real_data / "siemens_ct_jpeg2000"
    read, identity = read_series(folder)
    reference = sitk_read(folder)

    assert read.shape == (20, 512, 512)
    assert read.array.dtype == np.int16
    np.testing.assert_array_equal(read.array, reference.array)
    assert_same_geometry(read, reference)
    assert len(identity.sop_uids) == 20 and identity.modality == "CT"


def test_ge_three_slices_keep_padding_value(real_data):
    folder = real_data / "ge_ct_3slice"
    read, _ = read_series(folder)
    reference = sitk_read(folder)

    assert read.shape == (3, 512, 512)
    assert read.array.dtype == np.int16
    assert read.array.min() == -3024
    np.testing.assert_array_equal(read.array, reference.array)
    assert_same_geometry(read, reference)


def test_seg_among_images_is_skipped_as_non_image(tmp_path, real_data):
    for path in (real_data / "ge_ct_3slice").iterdir():
        os.symlink(path, tmp_path / path.name)
    os.symlink(real_data / "ge_ct_3slice_labels" / "liver_seg.dcm", tmp_path / "liver_seg.dcm")

    report = scan(tmp_path)
    read, _ = read_series(tmp_path)

    assert len(report.series) == 1 and report.series[0].n_files == 3
    (skipped,) = report.skipped
    assert "liver_seg.dcm" in skipped.message and "SEG" in skipped.message
    assert read.shape == (3, 512, 512)


# --- bad input --------------------------------------------------------------------------------


def test_path_that_does_not_exist(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DeepLiverError, match="nowhere"):
        scan(missing)
    with pytest.raises(DeepLiverError, match="nowhere"):
        read_series(missing)


def test_empty_folder(tmp_path):
    report = scan(tmp_path)
    assert report.series == [] and report.problems == []
    with pytest.raises(
        DeepLiverError, match=f"{tmp_path}: no readable image series found \\(no files in it\\)"
    ):
        read_series(tmp_path)


def test_folder_of_non_dicom_files(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "scan.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))

    report = scan(tmp_path)

    assert report.series == []
    assert {p.kind for p in report.problems} == {NOT_DICOM}
    assert {p.path.name for p in report.problems} == {"notes.txt", "scan.png"}
    assert any("notes.txt" in p.message for p in report.problems)
    with pytest.raises(DeepLiverError, match="notes.txt|scan.png"):
        read_series(tmp_path)


def test_truncated_files_are_reported_and_the_rest_loads(tmp_path):
    volume = phantom()
    write_ct_series(volume, tmp_path)
    last = tmp_path / "IM00010.dcm"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) - 100])  # pixel data cut short
    (tmp_path / "broken.dcm").write_bytes(data[:400])  # header cut short

    report = scan(tmp_path)
    read, identity = read_series(tmp_path)

    by_name = {p.path.name: p for p in report.problems if p.path is not None}
    assert by_name["IM00010.dcm"].kind == TRUNCATED
    assert "IM00010.dcm" in by_name["IM00010.dcm"].message
    assert by_name["broken.dcm"].kind in {UNREADABLE, TRUNCATED}
    assert TRUNCATED in kinds(report.series[0].problems)
    np.testing.assert_array_equal(read.array, volume.array[:9])
    assert len(identity.sop_uids) == 9


def test_two_series_in_one_folder(tmp_path):
    first = write_ct_series(phantom(seed=1), tmp_path / "one")
    second = write_ct_series(phantom(seed=2, shape=(4, 16, 16)), tmp_path / "two")

    report = scan(tmp_path)
    assert {s.key for s in report.series} == {first.series_uid, second.series_uid}
    with pytest.raises(DeepLiverError) as refused:
        read_series(tmp_path)
    assert first.series_uid in str(refused.value) and second.series_uid in str(refused.value)

    read, identity = read_series(tmp_path, series_uid=second.series_uid)
    assert read.shape == (4, 16, 16) and identity == second
    with pytest.raises(DeepLiverError, match="1.2.3.4"):
        read_series(tmp_path, series_uid="1.2.3.4")


def test_missing_slice_is_reported_and_refused_unless_allowed(tmp_path):
    volume = phantom()  # slices at 300.0, 302.5, ... along S
    write_ct_series(volume, tmp_path)
    (tmp_path / "IM00004.dcm").unlink()  # the slice at 307.5 mm

    (series,) = scan(tmp_path).series
    (missing,) = [p for p in series.problems if p.kind == MISSING_SLICES]
    assert "307.500" in missing.message and series.key in missing.message
    assert series.missing_positions == [307.5]
    with pytest.raises(DeepLiverError, match="307.500") as refused:
        read_series(tmp_path)
    assert str(refused.value).startswith(f"{tmp_path}: ")  # the folder, and what to do
    assert "deepliver convert --allow-gaps" in str(refused.value)

    read, identity = read_series(tmp_path, allow_gaps=True)
    assert read.shape == volume.shape
    assert_same_geometry(read, volume)
    np.testing.assert_array_equal(
        read.array[3], np.full((32, 32), volume.array[[0, 1, 2, 4, 5, 6, 7, 8, 9]].min())
    )
    np.testing.assert_array_equal(
        np.delete(read.array, 3, axis=0), np.delete(volume.array, 3, axis=0)
    )
    assert len(identity.sop_uids) == 9


def test_identical_duplicate_slice_is_read_once(tmp_path, caplog):
    volume = phantom()
    write_ct_series(volume, tmp_path)
    copy = tmp_path / "copy_of_3.dcm"
    copy.write_bytes((tmp_path / "IM00003.dcm").read_bytes())
    rewrite(copy, lambda ds: setattr(ds, "SOPInstanceUID", generate_uid()))

    (series,) = scan(tmp_path).series
    with caplog.at_level(logging.WARNING):
        read, identity = read_series(tmp_path)

    assert DUPLICATE_SLICES in kinds(series.problems)
    assert any("copy_of_3.dcm" in p.message or "IM00003.dcm" in p.message for p in series.problems)
    assert series.n_files == 11 and series.size == (32, 32, 10)
    np.testing.assert_array_equal(read.array, volume.array)
    assert len(identity.sop_uids) == 10
    assert "duplicate" in caplog.text


def test_differing_duplicate_slice_is_refused(tmp_path):
    write_ct_series(phantom(), tmp_path)
    copy = tmp_path / "other_3.dcm"
    copy.write_bytes((tmp_path / "IM00003.dcm").read_bytes())

    def change(ds):
        ds.SOPInstanceUID = generate_uid()
        pixels = ds.pixel_array.copy()
        pixels[0, 0] += 1
        ds.PixelData = pixels.tobytes()

    rewrite(copy, change)

    with pytest.raises(DeepLiverError, match="IM00003.dcm|other_3.dcm"):
        read_series(tmp_path)


def test_uneven_spacing_is_reported_and_refused(tmp_path):
    write_ct_series(phantom(), tmp_path)
    rewrite(
        tmp_path / "IM00005.dcm",
        lambda ds: setattr(ds, "ImagePositionPatient", [-120.5, -80.25, 310.6]),
    )
    (series,) = scan(tmp_path).series
    assert UNEVEN_SPACING in kinds(series.problems)
    with pytest.raises(DeepLiverError, match=series.key):
        read_series(tmp_path)


def test_mixed_orientations_and_sizes_in_one_uid_are_split(tmp_path):
    axial = write_ct_series(phantom(), tmp_path / "axial")
    uid = dict(study_uid=axial.study_uid, series_uid=axial.series_uid)
    write_ct_series(
        phantom(shape=(4, 32, 32), direction=_rotation(0.4, 0, 0)), tmp_path / "b", **uid
    )
    write_ct_series(phantom(shape=(3, 16, 24)), tmp_path / "c", **uid)

    report = scan(tmp_path)

    keys = [s.key for s in report.series]
    assert keys == [axial.series_uid, f"{axial.series_uid}#2", f"{axial.series_uid}#3"]
    assert [s.n_files for s in report.series] == [10, 4, 3]
    assert report.series[2].size == (24, 16, 3)
    assert all(SPLIT_SERIES in kinds(s.problems) for s in report.series)
    read, _ = read_series(tmp_path, series_uid=f"{axial.series_uid}#2")
    assert read.shape == (4, 32, 32)
    with pytest.raises(DeepLiverError, match=f"{axial.series_uid}#3"):
        read_series(tmp_path)


def test_structured_report_among_images_is_skipped(tmp_path):
    write_ct_series(phantom(), tmp_path)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = pydicom.uid.BasicTextSRStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    sr = Dataset()
    sr.file_meta = meta
    sr.SOPClassUID = pydicom.uid.BasicTextSRStorage
    sr.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    sr.Modality = "SR"
    sr.SeriesInstanceUID = generate_uid()
    sr.save_as(tmp_path / "report.dcm", enforce_file_format=True)

    report = scan(tmp_path)
    read, _ = read_series(tmp_path)

    assert len(report.series) == 1
    (skipped,) = report.skipped
    assert skipped.kind == NON_IMAGE and "report.dcm" in skipped.message and "SR" in skipped.message
    assert read.shape == (10, 32, 32)


def test_scan_of_one_file(tmp_path):
    write_ct_series(phantom(shape=(2, 8, 8)), tmp_path)
    report = scan(tmp_path / "IM00002.dcm")
    (series,) = report.series
    assert series.n_files == 1 and series.files == [tmp_path / "IM00002.dcm"]


def test_nonsense_orientation_is_reported_not_crashed(tmp_path):
    write_ct_series(phantom(shape=(5, 8, 8)), tmp_path)
    rewrite(tmp_path / "IM00003.dcm", lambda ds: setattr(ds, "ImageOrientationPatient", [0] * 6))

    report = scan(tmp_path)
    read, _ = read_series(tmp_path, allow_gaps=True)

    (bad,) = [p for p in report.problems if p.kind == UNREADABLE]
    assert "IM00003.dcm" in bad.message
    assert MISSING_SLICES in kinds(report.series[0].problems)
    assert read.shape == (5, 8, 8)


def test_impossible_header_value_stops_one_file_not_the_scan(tmp_path):
    write_ct_series(phantom(shape=(4, 8, 8)), tmp_path)
    path = tmp_path / "IM00004.dcm"
    rewrite(path, lambda ds: setattr(ds, "NumberOfFrames", 1000))
    element = b"\x28\x00\x08\x00IS\x04\x00"  # (0028,0008) IS, 4 bytes, explicit VR LE
    path.write_bytes(path.read_bytes().replace(element + b"1000", element + b"NaN "))

    report = scan(tmp_path)

    (bad,) = [p for p in report.problems if p.kind == UNREADABLE]
    assert "IM00004.dcm" in bad.message and "malformed DICOM header" in bad.message
    assert report.series[0].n_files == 3
