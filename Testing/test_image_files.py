"""NIfTI and NRRD keep voxels and geometry; bad files fail with the file named."""

import numpy as np
import pytest

from deepliver.errors import DeepLiverError
from deepliver.io.image_files import read_image, write_image
from deepliver.volume import Volume


@pytest.mark.parametrize("name", ["labels.nii.gz", "labels.nii", "labels.nrrd", "labels.mha"])
def test_label_map_round_trip_keeps_voxels_type_and_geometry(tmp_path, oblique_grid, name):
    rng = np.random.default_rng(7)
    labels = Volume(rng.integers(0, 3, oblique_grid.shape, dtype=np.uint8), oblique_grid)
    path = write_image(labels, tmp_path / "out" / name)
    back = read_image(path)
    assert back.array.dtype == np.uint8
    np.testing.assert_array_equal(back.array, labels.array)
    assert back.grid.same_as(oblique_grid), back.grid.describe_difference(oblique_grid)
    assert sorted(p.name for p in path.parent.iterdir()) == [name]  # no partial file left


def test_ct_in_hounsfield_units_stays_int16(tmp_path, oblique_grid):
    rng = np.random.default_rng(3)
    ct = Volume(rng.integers(-1024, 3000, oblique_grid.shape).astype(np.int16), oblique_grid)
    back = read_image(write_image(ct, tmp_path / "ct.nrrd"))
    assert back.array.dtype == np.int16
    np.testing.assert_array_equal(back.array, ct.array)


def test_missing_unknown_and_broken_files_are_named(tmp_path, oblique_grid):
    with pytest.raises(DeepLiverError, match="nothing.nii.gz: no such file"):
        read_image(tmp_path / "nothing.nii.gz")
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(DeepLiverError, match="notes.txt: not a NIfTI or NRRD"):
        read_image(text)
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(DeepLiverError, match="broken.nii.gz: cannot be read"):
        read_image(broken)
    volume = Volume(np.zeros(oblique_grid.shape, np.uint8), oblique_grid)
    with pytest.raises(DeepLiverError, match="unsupported output type"):
        write_image(volume, tmp_path / "labels.png")


def test_las_nifti_label_lines_up_with_its_dicom_series(real_data):
    """The Siemens liver label (5) is stored LAS; on the DICOM grid it must sit on liver HU."""
    from deepliver.io.dicom_read import read_series

    ct, _ = read_series(real_data / "siemens_ct_jpeg2000")
    labels = read_image(real_data / "siemens_ct_jpeg2000_labels" / "multilabel.nii.gz")
    assert np.allclose(np.diag(labels.direction), [1, -1, 1])  # stored LAS, read as LPS axes
    assert not labels.grid.same_as(ct.grid)

    on_ct = labels.resampled_onto(ct.grid, label=True)
    liver = on_ct.array == 5
    assert liver.sum() == (labels.array == 5).sum() == 366_708  # same lattice: nothing lost
    liver_hu = np.median(ct.array[liver])
    assert 40 <= liver_hu <= 130, liver_hu
    # The liver is on the patient's right: smaller L coordinate than the image centre.
    k, j, i = np.nonzero(liver)
    centroid = ct.grid.index_to_physical([i.mean(), j.mean(), k.mean()])
    assert centroid[0] < ct.grid.center()[0]
    # Misread as RAS-on-LPS (a flip of y), the label would no longer sit on liver.
    flipped = ct.array[:, ::-1, :][liver]
    assert abs(np.median(flipped) - liver_hu) > 20 or flipped.std() > 2 * ct.array[liver].std()
