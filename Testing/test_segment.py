"""`deepliver segment` on real files: results on the input's exact grid, bad input refused."""

import json
import shutil

import numpy as np
import pydicom
import pytest
import torch
from geometry_helpers import stored_as

from deepliver.cli import main
from deepliver.io.dicom_read import read_series
from deepliver.io.dicom_seg import read_dicom_seg
from deepliver.io.dicom_write import write_ct_series
from deepliver.io.image_files import read_image, write_image
from deepliver.models.card import bundled_models_dir
from deepliver.models.predict import dice
from deepliver.phantom import PhantomSpec, make_phantom
from deepliver.volume import Box, Volume


def segment(*args) -> int:
    return main(["segment", *map(str, args), "--progress", "none"])


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    """A phantom whose seed no model was trained on, as a DICOM series and as NIfTI."""
    folder = tmp_path_factory.mktemp("held-out")
    phantom = make_phantom(PhantomSpec(seed=7, size=(160, 160, 48), n_tumors=(2, 2)))
    write_ct_series(phantom.ct, folder / "dicom", uid_entropy="segment-test-7")
    write_image(phantom.ct, folder / "ct.nii.gz")
    return folder, phantom


def test_dicom_series_gives_every_result_on_its_exact_grid(tmp_path, held_out):
    folder, phantom = held_out
    assert segment(folder / "dicom", "-o", tmp_path, "--dicom-seg") == 0
    ct, identity = read_series(folder / "dicom")
    labels = read_image(tmp_path / "labels.nii.gz")
    assert labels.grid.same_as(ct.grid)
    assert dice(labels.array > 0, phantom.labels.array > 0) >= 0.9
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["series"]["series_uid"] == identity.series_uid
    voxel_ml = float(np.prod(ct.spacing)) / 1000
    assert summary["liver_volume_ml"] == pytest.approx((labels.array > 0).sum() * voxel_ml, 1e-3)
    assert summary["models"][0]["name"] == "liver-unet2d"
    assert summary["device"] == ("cuda" if torch.cuda.is_available() else "cpu")  # --device auto
    lesions = json.loads((tmp_path / "lesions.json").read_text())["lesions"]
    assert len(lesions) == summary["lesion_count"] >= 1
    assert all(0.5 <= lesion["mean_probability"] <= 1.0 for lesion in lesions)  # each voxel >= 0.5
    for name in ("labels.seg.nrrd", "labels.dcm", "lesions.csv", "overview.png"):
        assert (tmp_path / name).is_file(), name


def test_nifti_input_gives_the_same_labels(tmp_path, held_out):
    folder, _ = held_out
    assert segment(folder / "ct.nii.gz", "-o", tmp_path / "a") == 0
    assert segment(folder / "dicom", "-o", tmp_path / "b") == 0
    a = read_image(tmp_path / "a" / "labels.nii.gz")
    b = read_image(tmp_path / "b" / "labels.nii.gz")
    assert a.grid.same_as(b.grid)
    # The files store the grid with different precision, and a GPU's convolutions are not
    # bit-exact between runs: a handful of boundary voxels may flip, no more.
    assert (a.array != b.array).mean() <= 1e-4
    assert dice(a.array == 2, b.array == 2) >= 0.99
    assert segment(folder / "ct.nii.gz", "-o", tmp_path / "c", "--dicom-seg") == 1


def test_real_series_get_a_dicom_seg_or_a_reason_before_any_work(tmp_path, real_data, capsys):
    """GE files (an empty Specific Character Set) get their SEG; the Siemens files, whose UIDs
    were blanked, cannot be referenced by one: refused before the models run."""
    ge = real_data / "ge_ct_3slice"
    assert segment(ge, "-o", tmp_path / "ge", "--dicom-seg") == 0
    labels = read_image(tmp_path / "ge" / "labels.nii.gz")
    back = read_dicom_seg(tmp_path / "ge" / "labels.dcm", source_folder=ge).label_map()
    assert back.grid.same_as(labels.grid)
    np.testing.assert_array_equal(back.array, labels.array)
    capsys.readouterr()
    siemens = real_data / "siemens_ct_jpeg2000"
    assert segment(siemens, "-o", tmp_path / "siemens", "--dicom-seg") == 1
    assert "--dicom-seg cannot be met" in capsys.readouterr().err
    assert not (tmp_path / "siemens").exists()


STORAGES = {  # (old axis for new i, j, k), which new axes run backwards
    "RAS, as NIfTI tools write it": ((0, 1, 2), (True, True, False)),
    "sagittal, slices head first": ((2, 0, 1), (False, True, True)),
}


@pytest.mark.parametrize("storage", STORAGES)
def test_the_storage_of_a_file_does_not_change_the_labels(tmp_path, held_out, storage):
    order, flips = STORAGES[storage]
    folder, phantom = held_out
    write_image(stored_as(phantom.ct, order, flips), tmp_path / "stored.nii.gz")
    assert segment(tmp_path / "stored.nii.gz", "-o", tmp_path / "stored") == 0
    assert segment(folder / "ct.nii.gz", "-o", tmp_path / "plain") == 0
    stored = read_image(tmp_path / "stored" / "labels.nii.gz")
    plain = read_image(tmp_path / "plain" / "labels.nii.gz")
    back = stored.resampled_onto(plain.grid, label=True)  # the same voxel centres
    assert dice(plain.array > 0, phantom.labels.array > 0) >= 0.9 and (plain.array == 2).any()
    assert (back.array != plain.array).mean() <= 1e-4, storage


def test_a_series_that_is_not_ct_is_refused_unless_forced(tmp_path, held_out, capsys):
    folder, _ = held_out
    mr = tmp_path / "mr"
    shutil.copytree(folder / "dicom", mr)
    for path in mr.iterdir():
        ds = pydicom.dcmread(path)
        ds.Modality = "MR"
        ds.save_as(path)
    assert segment(mr, "-o", tmp_path / "out") == 1
    assert "is MR, not CT" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert segment(mr, "-o", tmp_path / "out", "--force") == 0


def test_no_liver_gives_empty_results_and_says_so(tmp_path, capsys):
    air = Volume.from_array(np.full((8, 64, 64), -1000, np.int16), spacing=(5, 5, 5))
    write_image(air, tmp_path / "air.nii.gz")
    assert segment(tmp_path / "air.nii.gz", "-o", tmp_path / "out") == 0
    assert "no liver found" in capsys.readouterr().out
    assert not read_image(tmp_path / "out" / "labels.nii.gz").array.any()
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["lesion_count"] == 0


def test_a_five_slice_volume_is_segmented_on_its_grid(tmp_path):
    phantom = make_phantom(PhantomSpec(seed=8, size=(128, 128, 40)))
    few = phantom.ct.crop(Box((18, 0, 0), (23, 128, 128)))
    write_image(few, tmp_path / "few.nii.gz")
    assert segment(tmp_path / "few.nii.gz", "-o", tmp_path / "out") == 0
    labels = read_image(tmp_path / "out" / "labels.nii.gz")
    assert labels.shape == (5, 128, 128) and labels.grid.same_as(few.grid)


def test_nan_voxels_are_refused(tmp_path, capsys):
    broken = np.zeros((6, 32, 32), np.float32)
    broken[2, 3, 4] = np.nan
    write_image(Volume.from_array(broken), tmp_path / "nan.nrrd")
    assert segment(tmp_path / "nan.nrrd", "-o", tmp_path / "out") == 1
    assert "1 voxels are NaN or infinite" in capsys.readouterr().err


def test_tampered_or_missing_models_are_refused(tmp_path, held_out, capsys, monkeypatch):
    folder, _ = held_out
    models = tmp_path / "models"
    shutil.copytree(bundled_models_dir(), models)
    weights = models / "liver-unet2d" / "weights.pt"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    monkeypatch.setenv("DEEPLIVER_MODELS", str(models))
    assert segment(folder / "ct.nii.gz", "-o", tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert "weights.pt" in err and "sha256" in err
    monkeypatch.setenv("DEEPLIVER_MODELS", str(tmp_path / "nowhere"))
    assert segment(folder / "ct.nii.gz", "-o", tmp_path / "out") == 1
    assert "model folder not found" in capsys.readouterr().err


def test_the_fine_liver_model_redraws_only_the_liver_edge(tmp_path, held_out):
    """The bundled fine liver model moves the liver label near the coarse liver's surface
    (and the clean-up after it little else), towards the truth, and leaves the tumors, and
    where they are looked for, as they were."""
    from scipy import ndimage

    from deepliver.inference.cascade import LIVER_EDGE_MM, load_cascade
    from deepliver.inference.cascade import segment as run_cascade

    _, phantom = held_out
    without = tmp_path / "models"
    shutil.copytree(bundled_models_dir(), without)
    shutil.rmtree(without / "liver-fine-unet2d")
    fine = run_cascade(phantom.ct, load_cascade("unet2d", "cpu"))
    coarse = run_cascade(phantom.ct, load_cascade("unet2d", "cpu", root=without))
    assert "liver_edge" in fine.timings and "liver_edge" not in coarse.timings
    assert np.array_equal(fine.labels.array == 2, coarse.labels.array == 2)
    # Tumors (the tumor stage and the detectors) are looked for in the coarse liver either way.
    assert np.array_equal(fine.tumor_search, coarse.labels.array > 0)
    assert np.array_equal(coarse.tumor_search, coarse.labels.array > 0)
    liver, coarse_liver = fine.labels.array > 0, coarse.labels.array > 0
    changed = liver != coarse_liver
    assert changed.any()
    spacing = phantom.ct.spacing[::-1]
    to_surface = np.where(
        coarse_liver,
        ndimage.distance_transform_edt(coarse_liver, sampling=spacing),
        ndimage.distance_transform_edt(~coarse_liver, sampling=spacing),
    )
    # Beyond the band only what the final clean-up does: a pocket that the redrawn edge closed
    # off is filled as a cavity (here 30 voxels, 11 mm deep), a piece it cut off is dropped.
    beyond = changed & (to_surface > LIVER_EDGE_MM + spacing.max())
    assert beyond.sum() <= 0.02 * changed.sum()
    truth = phantom.labels.array > 0
    assert dice(liver, truth) > dice(coarse_liver, truth)
