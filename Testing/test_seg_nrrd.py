"""Slicer .seg.nrrd files: exact round trip, the header Slicer needs, atomic writes, mapping."""

import nrrd
import numpy as np
import pytest
import slicerio

from deepliver.annotation.segmentation import Segment, Segmentation
from deepliver.annotation.structures import LIVER, TUMOR
from deepliver.annotation.terminology import terminology_entry
from deepliver.errors import DeepLiverError
from deepliver.io.dicom_read import read_series
from deepliver.io.image_files import read_image
from deepliver.io.seg_nrrd import read_seg_nrrd, write_seg_nrrd
from deepliver.volume import Box, Volume

SLICER_RIB_ENTRY = (
    "Segmentation category and type - 3D Slicer General Anatomy list"
    "~SCT^123037004^Anatomical Structure~SCT^113197003^Rib~^^"
    "~Anatomic codes - DICOM master list~^^~^^"
)


def liver_with_tumors(grid) -> Segmentation:
    """Liver containing two tumors (overlapping segments), one custom colour, one empty tumor."""
    liver = np.zeros(grid.shape, dtype=bool)
    liver[2:10, 3:15, 4:18] = True
    tumor_1 = np.zeros(grid.shape, dtype=bool)
    tumor_1[3:6, 4:7, 5:8] = True
    tumor_2 = np.zeros(grid.shape, dtype=bool)
    tumor_2[7:9, 10:14, 12:16] = True
    segments = (
        Segment("Liver", LIVER),
        Segment("Tumor 1", TUMOR),
        Segment("Tumor 2", TUMOR, (10, 20, 250)),
        Segment("Tumor 3", TUMOR),
    )
    masks = np.stack([liver, tumor_1, tumor_2, np.zeros(grid.shape, dtype=bool)])
    return Segmentation(grid, segments, masks)


def test_round_trip_is_exact_on_an_oblique_grid(tmp_path, oblique_grid):
    segmentation = liver_with_tumors(oblique_grid)
    path = write_seg_nrrd(segmentation, tmp_path / "a.seg.nrrd")
    back = read_seg_nrrd(path)
    assert back.segments == segmentation.segments  # names, structures, colours
    np.testing.assert_array_equal(back.masks, segmentation.masks)
    assert back.grid.shape == oblique_grid.shape
    np.testing.assert_allclose(back.grid.ijk_to_lps(), oblique_grid.ijk_to_lps(), atol=1e-9)
    assert [p.name for p in tmp_path.iterdir()] == ["a.seg.nrrd"]  # no temporary file left


def test_header_has_the_fields_slicer_needs(tmp_path, oblique_grid):
    segmentation = liver_with_tumors(oblique_grid)
    header = nrrd.read_header(str(write_seg_nrrd(segmentation, tmp_path / "a.seg.nrrd")))
    assert header["space"] == "left-posterior-superior"
    assert header["kinds"] == ["list", "domain", "domain", "domain"]  # overlap -> layers
    directions = header["space directions"][1:]
    np.testing.assert_allclose(directions, (oblique_grid.direction * oblique_grid.spacing).T)
    np.testing.assert_allclose(header["space origin"], oblique_grid.origin)
    assert header["Segment0_Name"] == "Liver"
    assert header["Segment0_Color"] == "0.866667 0.509804 0.396078"
    assert f"TerminologyEntry:{terminology_entry(LIVER)}" in header["Segment0_Tags"].split("|")
    assert f"TerminologyEntry:{terminology_entry(TUMOR)}" in header["Segment1_Tags"].split("|")
    assert header["Segment0_LabelValue"] == "1"
    # The liver and its tumors overlap, so they sit in different layers.
    assert header["Segment0_Layer"] != header["Segment1_Layer"]
    # Extent: i, j, k ranges of the voxels set (inclusive), empty segment as Slicer writes it.
    assert header["Segment0_Extent"] == "4 17 3 14 2 9"
    assert header["Segment1_Extent"] == "5 7 4 6 3 5"
    assert header["Segment3_Extent"] == "0 -1 0 -1 0 -1"


def test_no_overlap_gives_one_layer(tmp_path, oblique_grid):
    segmentation = liver_with_tumors(oblique_grid).without_segment("Liver")
    header = nrrd.read_header(str(write_seg_nrrd(segmentation, tmp_path / "t.seg.nrrd")))
    assert header["dimension"] == 3 and header["kinds"] == ["domain"] * 3
    np.testing.assert_array_equal(read_seg_nrrd(tmp_path / "t.seg.nrrd").masks, segmentation.masks)


def test_overlapping_segments_take_two_layers_and_disjoint_tumors_share_one(tmp_path, oblique_grid):
    segmentation = liver_with_tumors(oblique_grid)
    path = write_seg_nrrd(segmentation, tmp_path / "a.seg.nrrd")
    voxels, header = nrrd.read(str(path))
    assert voxels.shape == (2, *oblique_grid.size_ijk)  # (layer, i, j, k)
    layers = [int(header[f"Segment{i}_Layer"]) for i in range(4)]
    labels = [int(header[f"Segment{i}_LabelValue"]) for i in range(4)]
    # The liver in layer 0; both tumors inside it in layer 1, one label each; the empty tumor
    # overlaps nothing, so it takes the next label of layer 0.
    assert layers == [0, 1, 1, 0]
    assert labels == [1, 1, 2, 2]
    for index, mask in enumerate(segmentation.masks):
        np.testing.assert_array_equal(
            voxels[layers[index]] == labels[index], mask.transpose(2, 1, 0)
        )
        box = Box.around(mask)
        expected = (
            [0, -1, 0, -1, 0, -1]
            if box is None
            else [v for axis in (2, 1, 0) for v in (box.start[axis], box.stop[axis] - 1)]
        )
        assert [int(v) for v in header[f"Segment{index}_Extent"].split()] == expected


def _chained(grid) -> Segmentation:
    """A overlaps B, B overlaps C, C misses A: C goes back to layer 0 beside A."""
    masks = np.zeros((3, *grid.shape), dtype=bool)
    masks[0, 1:4, 1:4, 1:4] = True
    masks[1, 3:6, 3:6, 3:6] = True
    masks[2, 5:8, 5:8, 5:8] = True
    names = ("Tumor 1", "Tumor 2", "Tumor 3")
    return Segmentation(grid, tuple(Segment(n, TUMOR) for n in names), masks)


def _crowded(grid) -> Segmentation:
    """256 disjoint one-voxel tumors: a uint8 layer holds 255 labels, the last one spills over."""
    masks = np.zeros((256, *grid.shape), dtype=bool)
    flat = masks.reshape(256, -1)
    flat[np.arange(256), np.arange(256) * 3] = True
    segments = tuple(Segment(f"Tumor {n}", TUMOR) for n in range(1, 257))
    return Segmentation(grid, segments, masks)


@pytest.mark.parametrize("build", [liver_with_tumors, _chained, _crowded])
def test_same_file_as_slicerio_add_segment_and_its_files_still_read(tmp_path, oblique_grid, build):
    # Files written before laying out the layers here went through slicerio.add_segment:
    # the new writer must give the same voxels and header, and read those files back exactly.
    segmentation = build(oblique_grid)
    grid = segmentation.grid
    data = slicerio.create_segmentation(grid.size_ijk, grid.ijk_to_lps(), dtype="uint8")
    data["containedRepresentationNames"] = ["Binary labelmap"]
    for number, (segment, mask) in enumerate(
        zip(segmentation.segments, segmentation.masks, strict=True), start=1
    ):
        fields = {
            "id": f"Segment_{number}",
            "name": segment.name,
            "color": [round(c / 255.0, 6) for c in segment.display_color],
            "terminology": slicerio.segmentation.terminology_entry_from_string(
                terminology_entry(segment.structure)
            ),
        }
        slicerio.add_segment(data, mask.transpose(2, 1, 0), fields)
    before = tmp_path / "before.seg.nrrd"
    slicerio.write_segmentation(str(before), data)
    expected_voxels, expected = nrrd.read(str(before))
    voxels, header = nrrd.read(str(write_seg_nrrd(segmentation, tmp_path / "now.seg.nrrd")))
    np.testing.assert_array_equal(voxels, expected_voxels)
    assert header.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(header[key], value)  # NaN row of a 4D file included
        else:
            assert header[key] == value, key
    back = read_seg_nrrd(before)
    assert back.segments == segmentation.segments
    np.testing.assert_array_equal(back.masks, segmentation.masks)


def test_interrupted_write_keeps_the_previous_file(tmp_path, oblique_grid, monkeypatch):
    path = tmp_path / "a.seg.nrrd"
    first = liver_with_tumors(oblique_grid)
    write_seg_nrrd(first, path)
    before = path.read_bytes()

    def crash(name, data, **kwargs):
        with open(name, "wb") as partial:
            partial.write(b"NRRD0005\n# half")
        raise OSError("disk full")

    monkeypatch.setattr(slicerio, "write_segmentation", crash)
    with pytest.raises(DeepLiverError, match="disk full"):
        write_seg_nrrd(first.without_segment("Tumor 1"), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.seg.nrrd"]


def test_unmappable_segment_is_refused_naming_file_and_segment(tmp_path, oblique_grid):
    data = slicerio.create_segmentation(oblique_grid.size_ijk, oblique_grid.ijk_to_lps())
    mask = np.zeros(oblique_grid.size_ijk, dtype=bool)
    mask[1:3, 1:3, 1:3] = True
    terminology = slicerio.segmentation.terminology_entry_from_string(SLICER_RIB_ENTRY)
    slicerio.add_segment(data, mask, {"name": "Rib 3", "terminology": terminology})
    path = tmp_path / "ribs.seg.nrrd"
    slicerio.write_segmentation(str(path), data)
    with pytest.raises(DeepLiverError, match=r"ribs\.seg\.nrrd: segment 'Rib 3'"):
        read_seg_nrrd(path)


def test_segment_without_terminology_is_mapped_by_name(tmp_path, oblique_grid):
    data = slicerio.create_segmentation(oblique_grid.size_ijk, oblique_grid.ijk_to_lps())
    mask = np.zeros(oblique_grid.size_ijk, dtype=bool)
    mask[1:3, 1:3, 1:3] = True
    slicerio.add_segment(data, mask, {"name": "Tumor 4"})
    slicerio.write_segmentation(str(tmp_path / "n.seg.nrrd"), data)
    back = read_seg_nrrd(tmp_path / "n.seg.nrrd")
    assert back.segments[0].structure == TUMOR
    np.testing.assert_array_equal(back.masks[0], mask.transpose(2, 1, 0))


def test_bad_names_and_files(tmp_path, oblique_grid):
    with pytest.raises(DeepLiverError, match=r"must end with \.seg\.nrrd"):
        write_seg_nrrd(liver_with_tumors(oblique_grid), tmp_path / "a.nrrd")
    with pytest.raises(DeepLiverError, match="no such file"):
        read_seg_nrrd(tmp_path / "missing.seg.nrrd")
    (tmp_path / "junk.seg.nrrd").write_bytes(b"not a nrrd")
    with pytest.raises(DeepLiverError, match=r"junk\.seg\.nrrd"):
        read_seg_nrrd(tmp_path / "junk.seg.nrrd")


def test_real_label_map_is_a_plain_nrrd_on_the_ge_grid(tmp_path, real_data):
    # liver_seg.nrrd is a plain label map (no Segment fields): read_seg_nrrd refuses it
    # clearly, read_image reads it, and it lies on the GE series' grid.
    plain = real_data / "ge_ct_3slice_labels" / "liver_seg.nrrd"
    with pytest.raises(DeepLiverError, match="plain label map"):
        read_seg_nrrd(plain)
    labels = read_image(plain)
    ct, _ = read_series(real_data / "ge_ct_3slice")
    ct.require_same_grid(labels)
    segmentation = Segmentation.from_label_map(Volume(labels.array.astype(np.uint8), ct.grid))
    back = read_seg_nrrd(write_seg_nrrd(segmentation, tmp_path / "ge.seg.nrrd"))
    assert back.grid.same_as(ct.grid)
    np.testing.assert_array_equal(back.label_map().array, labels.array)
