"""DICOM SEG: phantom annotations written with highdicom read back onto the same grid; the real
dcmqi SEG of the GE series gives the same mask as its NRRD; bad input is refused by name."""

import warnings

import numpy as np
import pydicom
import pytest
from pydicom.uid import SegmentationStorage

from deepliver.annotation.segmentation import Segmentation
from deepliver.annotation.structures import LIVER, TUMOR
from deepliver.errors import DeepLiverError
from deepliver.io.dicom_read import read_series
from deepliver.io.dicom_seg import read_dicom_seg, write_dicom_seg
from deepliver.io.dicom_write import write_ct_series
from deepliver.io.image_files import read_image
from deepliver.phantom import PhantomSpec, make_phantom
from deepliver.volume import Grid

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module", params=["axial", "oblique"])
def phantom_series(request, tmp_path_factory):
    """(folder of CT files, identity, Segmentation of the phantom's labels)."""
    phantom = make_phantom(PhantomSpec(seed=3, size=(48, 48, 16), orientation=request.param))
    folder = tmp_path_factory.mktemp(request.param) / "ct"
    identity = write_ct_series(phantom.ct, folder, uid_entropy=f"seg-{request.param}")
    segmentation = Segmentation.from_label_map(phantom.labels)
    assert len(segmentation.of_structure(TUMOR)) >= 1
    return folder, identity, segmentation


def test_phantom_seg_reads_back_onto_the_same_grid(tmp_path, phantom_series):
    folder, identity, segmentation = phantom_series
    path = write_dicom_seg(segmentation, folder, tmp_path / "seg.dcm", series_identity=identity)
    ct, _ = read_series(folder)
    back = read_dicom_seg(path, source_folder=folder)
    assert back.grid.same_as(ct.grid) and back.grid.same_as(segmentation.grid)
    assert back.segments == segmentation.segments  # names, structures, colours
    np.testing.assert_array_equal(back.masks, segmentation.masks)
    assert [p.name for p in tmp_path.iterdir()] == ["seg.dcm"]


def test_phantom_seg_passes_basic_checks(tmp_path, phantom_series):
    folder, identity, segmentation = phantom_series
    path = write_dicom_seg(segmentation, folder, tmp_path / "seg.dcm", series_identity=identity)
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == SegmentationStorage
    assert ds.SegmentationType == "BINARY"
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == identity.series_uid
    referenced = {
        i.ReferencedSOPInstanceUID
        for i in ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    }
    assert referenced <= set(identity.sop_uids)
    assert ds.StudyInstanceUID == identity.study_uid
    codes = [
        (
            item.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator,
            item.SegmentedPropertyTypeCodeSequence[0].CodeValue,
        )
        for item in ds.SegmentSequence
    ]
    assert codes[0] == ("SCT", "10200004")
    assert set(codes[1:]) == {("SCT", "108369006")}
    tumor = ds.SegmentSequence[1]
    assert tumor.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
    assert tumor.AnatomicRegionSequence[0].CodeValue == "10200004"
    assert {item.SegmentAlgorithmType for item in ds.SegmentSequence} == {"MANUAL"}
    # Empty frames are left out: one frame per (segment, slice) that holds voxels.
    assert ds.NumberOfFrames == int(segmentation.masks.any(axis=(2, 3)).sum())


def test_model_output_is_automatic_with_name_and_version(tmp_path, phantom_series):
    folder, _, segmentation = phantom_series
    path = write_dicom_seg(
        segmentation, folder, tmp_path / "seg.dcm", algorithm=("liver-unet", "1.2.0")
    )
    item = pydicom.dcmread(path).SegmentSequence[0]
    assert item.SegmentAlgorithmType == "AUTOMATIC"
    assert item.SegmentAlgorithmName == "liver-unet"
    assert item.SegmentationAlgorithmIdentificationSequence[0].AlgorithmVersion == "1.2.0"


def test_without_source_the_grid_spans_the_frames_held(tmp_path, phantom_series):
    folder, _, segmentation = phantom_series
    path = write_dicom_seg(segmentation, sorted(folder.iterdir()), tmp_path / "seg.dcm")
    back = read_dicom_seg(path)
    z, _, _ = back.grid.offset_in(segmentation.grid)
    expected = segmentation.masks[:, z : z + back.grid.shape[0]]
    np.testing.assert_array_equal(back.masks, expected)
    assert not np.delete(segmentation.masks, range(z, z + back.grid.shape[0]), axis=1).any()


def test_slices_reversed_grid_is_written_in_source_order(tmp_path, phantom_series):
    folder, _, segmentation = phantom_series
    grid = segmentation.grid
    last = grid.index_to_physical((0, 0, grid.shape[0] - 1))
    flipped_grid = Grid(grid.shape, last, grid.spacing, grid.direction * [1, 1, -1])
    flipped = Segmentation(flipped_grid, segmentation.segments, segmentation.masks[:, ::-1])
    back = read_dicom_seg(write_dicom_seg(flipped, folder, tmp_path / "s.dcm"), folder)
    np.testing.assert_array_equal(back.masks, segmentation.masks)


def test_segmentation_off_the_series_grid_is_refused(tmp_path, phantom_series):
    folder, _, segmentation = phantom_series
    grid = segmentation.grid
    shifted = Grid(grid.shape, grid.origin + 1.0, grid.spacing, grid.direction)
    moved = Segmentation(shifted, segmentation.segments, segmentation.masks)
    with pytest.raises(DeepLiverError, match="not on the grid of .*origin"):
        write_dicom_seg(moved, folder, tmp_path / "seg.dcm")
    assert not (tmp_path / "seg.dcm").exists()


def test_identity_of_another_series_is_refused(tmp_path, phantom_series):
    folder, identity, segmentation = phantom_series
    other = type(identity)(**{**identity.to_dict(), "series_uid": "1.2.3.4", "sop_uids": ()})
    with pytest.raises(DeepLiverError, match="1.2.3.4"):
        write_dicom_seg(segmentation, folder, tmp_path / "seg.dcm", series_identity=other)


def test_seg_of_another_series_is_refused_naming_both(tmp_path, phantom_series):
    folder, identity, segmentation = phantom_series
    path = write_dicom_seg(segmentation, folder, tmp_path / "seg.dcm")
    other = make_phantom(PhantomSpec(seed=4, size=(48, 48, 16)))
    other_identity = write_ct_series(other.ct, tmp_path / "other", uid_entropy="other")
    with pytest.raises(DeepLiverError) as caught:
        read_dicom_seg(path, source_folder=tmp_path / "other")
    assert identity.series_uid in str(caught.value)
    assert other_identity.series_uid in str(caught.value)


def test_non_seg_files_are_refused_naming_the_file(tmp_path, phantom_series):
    folder, _, _ = phantom_series
    ct_file = sorted(folder.iterdir())[0]
    with pytest.raises(DeepLiverError, match=f"{ct_file.name}: not a DICOM Segmentation"):
        read_dicom_seg(ct_file)
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"nothing here")
    with pytest.raises(DeepLiverError, match="junk.dcm"):
        read_dicom_seg(junk)


def test_real_seg_gives_the_same_mask_as_its_nrrd(real_data):
    labels_folder = real_data / "ge_ct_3slice_labels"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seg = read_dicom_seg(
            labels_folder / "liver_seg.dcm", source_folder=real_data / "ge_ct_3slice"
        )
    labels = read_image(labels_folder / "liver_seg.nrrd")
    ct, _ = read_series(real_data / "ge_ct_3slice")
    assert seg.grid.same_as(ct.grid) and labels.grid.same_as(ct.grid)
    # dcmqi wrote it with retired SNOMED-RT codes (SRT T-62000 Liver); they map to SCT Liver.
    assert [(s.name, s.structure) for s in seg.segments] == [("Liver", LIVER)]
    np.testing.assert_array_equal(seg.masks[0], labels.array == 1)
    assert seg.masks[0].sum() == 107098
    # Without the series, its own plane positions give the same grid (all 3 frames hold liver).
    own = read_dicom_seg(labels_folder / "liver_seg.dcm")
    assert own.grid.same_as(ct.grid)
    np.testing.assert_array_equal(own.masks, seg.masks)


def test_real_seg_against_another_series_is_refused(real_data, phantom_series):
    folder, identity, _ = phantom_series
    with pytest.raises(DeepLiverError, match=identity.series_uid):
        read_dicom_seg(real_data / "ge_ct_3slice_labels" / "liver_seg.dcm", source_folder=folder)


def test_frame_off_its_source_slice_is_refused(tmp_path, phantom_series):
    folder, _, segmentation = phantom_series
    path = write_dicom_seg(segmentation, folder, tmp_path / "seg.dcm")
    ds = pydicom.dcmread(path)
    plane = ds.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0]
    plane.ImagePositionPatient = [float(v) + 0.5 for v in plane.ImagePositionPatient]
    ds.save_as(tmp_path / "moved.dcm")
    with pytest.raises(DeepLiverError, match="moved.dcm: frame 1 does not lie on the grid"):
        read_dicom_seg(tmp_path / "moved.dcm", source_folder=folder)


def test_real_ge_series_gets_a_seg_of_its_liver(tmp_path, real_data):
    """The GE files carry an empty Specific Character Set and a one-word patient name: the SEG
    is written all the same (highdicom refused '' before), quietly, and reads back."""
    folder = real_data / "ge_ct_3slice"
    ct, identity = read_series(folder)
    liver = read_image(real_data / "ge_ct_3slice_labels" / "liver_seg.nrrd")
    segmentation = Segmentation.from_label_map(liver)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = write_dicom_seg(segmentation, folder, tmp_path / "seg.dcm", series_identity=identity)
    assert not [w for w in caught if "person name" in str(w.message)]
    assert "SpecificCharacterSet" not in pydicom.dcmread(path)  # the default repertoire
    back = read_dicom_seg(path, source_folder=folder)
    assert back.grid.same_as(ct.grid)
    np.testing.assert_array_equal(back.masks, segmentation.masks)


def test_empty_default_before_code_extensions_is_named(tmp_path, phantom_series):
    folder, _, segmentation = phantom_series
    source = tmp_path / "ct"
    source.mkdir()
    for file in sorted(folder.iterdir()):
        ds = pydicom.dcmread(file)
        ds.SpecificCharacterSet = ["", "ISO 2022 IR 100"]
        ds.save_as(source / file.name)
    path = write_dicom_seg(segmentation, source, tmp_path / "seg.dcm")
    assert list(pydicom.dcmread(path).SpecificCharacterSet) == ["ISO 2022 IR 6", "ISO 2022 IR 100"]


def test_series_without_uids_is_refused_naming_what_it_lacks(tmp_path, real_data):
    """The Siemens files had their UIDs blanked: a SEG could not say which slices it covers."""
    folder = real_data / "siemens_ct_jpeg2000"
    ct, identity = read_series(folder)
    assert identity.missing_uids == [
        "Study Instance UID",
        "Series Instance UID",
        "SOP Instance UIDs",
    ]
    labels = ct.with_array((ct.array > 0).astype(np.uint8))
    segmentation = Segmentation.from_label_map(labels)
    for known in (identity, None):
        with pytest.raises(DeepLiverError, match="seg.dcm: .* lack Study Instance UID, Series"):
            write_dicom_seg(segmentation, folder, tmp_path / "seg.dcm", series_identity=known)
    assert not list(tmp_path.iterdir())
