"""write_outputs: every file of a segmentation run, read back on the input's exact grid."""

import json

import numpy as np
import pydicom
import pytest
from geometry_helpers import stored_as
from PIL import Image

from deepliver.errors import DeepLiverError
from deepliver.inference.outputs import algorithm_of, write_outputs
from deepliver.inference.overview import choose_slices, write_overview
from deepliver.io.dicom_seg import read_dicom_seg
from deepliver.io.image_files import read_image
from deepliver.io.load import load_volume
from deepliver.io.seg_nrrd import read_seg_nrrd
from deepliver.phantom import PhantomSpec, make_phantom
from deepliver.phantom.files import write_phantom
from deepliver.volume import GridMismatchError, Volume

MODELS = [
    {"name": "liver-unet2d", "version": "1.0.0", "stage": "liver"},
    {"name": "tumor-unet3d", "version": "1.1.0", "stage": "tumor"},
]


@pytest.fixture(scope="module")
def dicom_phantom(tmp_path_factory):
    spec = PhantomSpec(seed=11, size=(64, 64, 24), n_tumors=(2, 4), tumor_diameter_mm=(15, 40))
    phantom = make_phantom(spec)
    files = write_phantom(phantom, tmp_path_factory.mktemp("phantom"))
    ct, identity = load_volume(files.dicom)
    labels = ct.with_array(phantom.labels.array)  # the phantom's grid is the series' grid
    assert ct.grid.same_as(phantom.ct.grid)
    return ct, labels, identity, files.dicom


def test_every_file_is_written_and_reads_back_on_the_input_grid(dicom_phantom, tmp_path):
    ct, labels, identity, dicom = dicom_phantom
    timings = {"load": 0.4, "liver": 1.5, "tumor": 2.0}
    paths = write_outputs(
        ct,
        labels,
        tmp_path,
        identity=identity,
        dicom_source=dicom,
        dicom_seg=True,
        models=MODELS,
        timings=timings,
    )
    names = {kind: path.name for kind, path in paths.items()}
    assert names == {
        "labels_nifti": "labels.nii.gz",
        "labels_seg_nrrd": "labels.seg.nrrd",
        "dicom_seg": "labels.dcm",
        "lesions_csv": "lesions.csv",
        "lesions_json": "lesions.json",
        "overview": "overview.png",
        "summary": "summary.json",
    }
    assert all(path.is_file() for path in paths.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names.values())

    nifti = read_image(paths["labels_nifti"])
    seg_nrrd = read_seg_nrrd(paths["labels_seg_nrrd"]).label_map()
    dicom_seg = read_dicom_seg(paths["dicom_seg"], dicom)
    for volume in (nifti, seg_nrrd, dicom_seg.label_map()):
        assert volume.grid.same_as(ct.grid)
        assert np.array_equal(volume.array, labels.array)
    tumor_names = [s.name for s in dicom_seg.segments if s.name.startswith("Tumor")]
    lesions = json.loads(paths["lesions_json"].read_text())["lesions"]
    assert len(tumor_names) == len(lesions) >= 2

    data = json.loads(paths["summary"].read_text())
    assert data["lesion_count"] == len(lesions)
    assert data["models"] == [
        {"name": m["name"], "version": m["version"], "stage": m["stage"]} for m in MODELS
    ]
    assert set(data["timings_s"]) == {"load", "liver", "tumor", "write_outputs"}
    assert data["series"]["series_uid"] == identity.series_uid
    burden = 100 * data["tumor_volume_ml"] / data["liver_volume_ml"]
    assert data["tumor_burden_percent"] == pytest.approx(burden, rel=1e-3)

    with Image.open(paths["overview"]) as image:
        assert image.format == "PNG" and image.mode == "RGB"
        assert image.width >= 4 * 200 and 200 <= image.height <= 1000
        pixels = np.asarray(image)
    assert (pixels == (80, 255, 80)).all(axis=-1).any()  # a tumor outline is drawn


def test_algorithm_names_both_models():
    assert algorithm_of(MODELS) == ("liver-unet2d+tumor-unet3d", "1.0.0+1.1.0")
    assert algorithm_of([])[0] == "DeepLiver"


def test_oblique_image_files_only(tmp_path):
    spec = PhantomSpec(seed=4, size=(64, 64, 24), orientation="oblique", n_tumors=(1, 2))
    phantom = make_phantom(spec)
    paths = write_outputs(phantom.ct, phantom.labels, tmp_path)
    assert "dicom_seg" not in paths
    for volume in (read_image(paths["labels_nifti"]), read_seg_nrrd(paths["labels_seg_nrrd"])):
        volume = volume if hasattr(volume, "array") else volume.label_map()
        assert volume.grid.same_as(phantom.labels.grid)
        assert np.array_equal(volume.array, phantom.labels.array)


def test_nothing_found_still_writes_the_files(dicom_phantom, tmp_path):
    ct, labels, identity, dicom = dicom_phantom
    empty = labels.with_array(np.zeros(labels.shape, dtype=np.uint8))
    paths = write_outputs(ct, empty, tmp_path, dicom_source=dicom, dicom_seg=True)
    assert "dicom_seg" not in paths
    data = json.loads(paths["summary"].read_text())
    assert data["lesion_count"] == 0 and data["liver_volume_ml"] == 0
    assert data["notes"][0] == "no liver found"
    assert any("DICOM SEG" in note for note in data["notes"])
    segmentation = read_seg_nrrd(paths["labels_seg_nrrd"])
    assert [s.name for s in segmentation.segments] == ["Liver"] and not segmentation.masks.any()
    assert json.loads(paths["lesions_json"].read_text())["lesions"] == []
    assert paths["overview"].stat().st_size > 1000


def test_refusals(dicom_phantom, tmp_path):
    ct, labels, _, _ = dicom_phantom
    with pytest.raises(DeepLiverError, match="source DICOM series"):
        write_outputs(ct, labels, tmp_path, dicom_seg=True)
    shifted = labels.array[1:]

    with pytest.raises(GridMismatchError):
        write_outputs(ct, Volume.from_array(shifted), tmp_path)


def test_overview_slices_show_tumor_and_the_liver_middle(dicom_phantom, tmp_path):
    ct, labels, _, _ = dicom_phantom
    slices = choose_slices(labels.array, labels.grid, 4)
    tumor_per_slice = (labels.array == 2).sum(axis=(1, 2))
    assert len(slices) == 4 and int(np.argmax(tumor_per_slice)) in slices
    liver_slices = np.flatnonzero((labels.array > 0).any(axis=(1, 2)))
    assert int(liver_slices[len(liver_slices) // 2]) in slices
    path = write_overview(ct, labels, tmp_path / "one.png", n_slices=2)
    with Image.open(path) as image:
        assert image.width >= 2 * 200


@pytest.mark.parametrize(
    "order, flips", [((0, 1, 2), (True, True, False)), ((2, 0, 1), (False, True, True))]
)
def test_overview_is_axial_and_radiological_whatever_the_storage(
    dicom_phantom, tmp_path, order, flips
):
    """A RAS file or a sagittal one gives the overview of the DICOM series, pixel for pixel."""
    ct, labels, _, _ = dicom_phantom
    plain = write_overview(ct, labels, tmp_path / "plain.png")
    stored = stored_as(ct, order, flips), stored_as(labels, order, flips)
    other = write_overview(*stored, tmp_path / "stored.png")
    with Image.open(plain) as a, Image.open(other) as b:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_refused_dicom_seg_leaves_a_former_runs_files_as_they_were(dicom_phantom, tmp_path):
    ct, labels, identity, dicom = dicom_phantom
    out = tmp_path / "out"
    write_outputs(ct, labels, out, identity=identity, dicom_source=dicom, dicom_seg=True)
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    blanked = tmp_path / "blanked"  # the same series, one slice without its SOP Instance UID
    blanked.mkdir()
    for number, file in enumerate(sorted(dicom.iterdir())):
        ds = pydicom.dcmread(file)
        if number == 3:
            del ds.SOPInstanceUID
            del ds.file_meta.MediaStorageSOPInstanceUID
        ds.save_as(blanked / file.name, enforce_file_format=False)
    fewer = labels.with_array(np.where(labels.array == 2, 1, labels.array).astype(np.uint8))
    with pytest.raises(DeepLiverError, match="lack SOP Instance UIDs"):
        write_outputs(ct, fewer, out, dicom_source=blanked, dicom_seg=True)
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before
