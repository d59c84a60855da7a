"""The Slicer-free parts of the Slicer glue (DeepLiverSlicer/), tested without Slicer."""

import json
import os
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

# DeepLiverSlicer/ lives beside deepliver/ but is not part of the installed package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepliver.annotation import terminology as core_terminology
from deepliver.annotation.structures import LIVER, STRUCTURES, TUMOR, Code
from deepliver.volume import LPS_TO_RAS, Grid, GridMismatchError, flip_lps_ras
from DeepLiverSlicer import (
    MIN_PYTHON,
    dependencies,
    dicom_identity,
    environment_problem,
    markups,
    runner,
    segmentations,
    terminology,
    volumes,
)

ROOT = Path(__file__).resolve().parents[1]

# The default entry of a new vtkSegment (Libs/vtkSegmentationCore/vtkSegment.cxx, Slicer 5.8 and
# 5.12): the format SerializeTerminologyEntry writes and DeserializeTerminologyEntry reads.
SLICER_DEFAULT_ENTRY = (
    "Segmentation category and type - 3D Slicer General Anatomy list"
    "~SCT^85756007^Tissue~SCT^85756007^Tissue~^^~Anatomic codes - DICOM master list~^^~^^"
)


# --- Python version ------------------------------------------------------------------------


def test_environment_check_follows_the_core():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    lower = project["project"]["requires-python"].split(",")[0].removeprefix(">=")
    assert tuple(int(v) for v in lower.split(".")) == MIN_PYTHON
    assert environment_problem((3, 12, 10), "3.0.2") is None  # Slicer 5.12
    slicer_5_10 = environment_problem((3, 12, 10), "2.4.4")
    assert "Slicer 5.12" in slicer_5_10 and "pydicom 2.4.4" in slicer_5_10
    slicer_5_8 = environment_problem((3, 9, 10, "final", 0), "2.4.4")
    assert "Python 3.9.10" in slicer_5_8


# --- terminology ---------------------------------------------------------------------------


def test_terminology_entries_have_slicers_format():
    assert core_terminology.terminology_entry(LIVER) == (
        "Segmentation category and type - DeepLiver"
        "~SCT^123037004^Anatomical Structure~SCT^10200004^Liver~^^~~^^~^^"
    )
    assert core_terminology.terminology_entry(TUMOR) == (
        "Segmentation category and type - DeepLiver"
        "~SCT^49755003^Morphologically Altered Structure~SCT^108369006^Neoplasm~^^"
        "~Anatomic codes - DICOM master list~SCT^10200004^Liver~^^"
    )


def test_terminology_entries_parse_back():
    default = core_terminology.parse_terminology_entry(SLICER_DEFAULT_ENTRY)
    assert default["type"] == Code("SCT", "85756007", "Tissue")
    assert default["region"] is None
    for structure in STRUCTURES:
        fields = core_terminology.parse_terminology_entry(
            core_terminology.terminology_entry(structure)
        )
        assert fields["context"] == core_terminology.CONTEXT_NAME
        assert (fields["category"], fields["type"]) == (structure.category, structure.type)
        assert fields["region"] == structure.region
        assert fields["type_modifier"] is None and fields["region_modifier"] is None


@pytest.mark.parametrize(
    "entry",
    [
        "context~SCT^1^a~SCT^2^b~^^~~^^",  # 6 fields
        "~SCT^1^a~SCT^2^b~^^~~^^~^^",  # no context
        "context~^^~SCT^2^b~^^~~^^~^^",  # empty category ("none" in Slicer)
        "context~SCT^1~SCT^2^b~^^~~^^~^^",  # a code with 2 parts
    ],
)
def test_bad_terminology_entries_are_refused(entry):
    with pytest.raises(ValueError):
        core_terminology.parse_terminology_entry(entry)


def test_term_file_is_generated_from_the_table():
    assert (
        terminology.TERM_FILE.read_text(encoding="utf-8") == core_terminology.terminology_text()
    ), "DeepLiver.term.json is out of date: run `python -m DeepLiverSlicer.terminology`"


def test_term_file_has_the_layout_slicer_reads():
    document = json.loads(terminology.TERM_FILE.read_text(encoding="utf-8"))
    assert document["SegmentationCategoryTypeContextName"] == core_terminology.CONTEXT_NAME
    types = {}
    for category in document["SegmentationCodes"]["Category"]:
        for key in ("CodingSchemeDesignator", "CodeValue", "CodeMeaning"):  # mandatory
            assert isinstance(category[key], str) and category[key]
        assert isinstance(category["showAnatomy"], bool)
        for entry in category["Type"]:
            for key in ("CodingSchemeDesignator", "CodeValue", "CodeMeaning"):
                assert isinstance(entry[key], str) and entry[key]
            rgb = entry["recommendedDisplayRGBValue"]
            assert len(rgb) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in rgb)
            category_code = Code(
                *(category[k] for k in ("CodingSchemeDesignator", "CodeValue")),
                category["CodeMeaning"],
            )
            types[entry["CodeValue"]] = (category_code, entry, category["showAnatomy"])
    assert set(types) == {s.type.value for s in STRUCTURES}
    for structure in STRUCTURES:
        category, entry, show_anatomy = types[structure.type.value]
        assert category == structure.category
        assert entry["CodeMeaning"] == structure.type.meaning
        assert tuple(entry["recommendedDisplayRGBValue"]) == structure.color
        assert show_anatomy == (structure.region is not None)


# --- volumes: the 4x4 matrix of vtkMRMLVolumeNode --------------------------------------------


def vtk_mrml_ijk_to_ras(origin_ras, spacing, directions_ras) -> np.ndarray:
    """IJKToRAS as vtkMRMLVolumeNode composes it: direction columns times spacing, then origin."""
    matrix = np.eye(4)
    for row in range(3):
        for column in range(3):
            matrix[row, column] = directions_ras[row][column] * spacing[column]
        matrix[row, 3] = origin_ras[row]
    return matrix


def test_grid_from_a_volume_nodes_matrix(oblique_grid):
    origin_ras = flip_lps_ras(oblique_grid.origin)
    directions_ras = LPS_TO_RAS[:3, :3] @ oblique_grid.direction
    matrix = vtk_mrml_ijk_to_ras(origin_ras, oblique_grid.spacing, directions_ras)
    grid = volumes.grid_from_matrix(matrix, oblique_grid.shape)
    assert grid.same_as(oblique_grid), grid.describe_difference(oblique_grid)
    np.testing.assert_allclose(volumes.matrix_from_grid(grid), matrix, atol=1e-12)
    # A voxel (i, j, k) of the node is at matrix @ (i, j, k, 1) in RAS, the grid's LPS point.
    ijk = np.array([3.0, 11.0, 7.0])
    ras = (matrix @ np.append(ijk, 1.0))[:3]
    np.testing.assert_allclose(flip_lps_ras(ras), grid.index_to_physical(ijk), atol=1e-9)


def test_array_order_is_kji_like_array_from_volume():
    # vtkImageData dimensions are (i, j, k); arrayFromVolume reshapes to reversed dimensions.
    dimensions_ijk = (5, 4, 3)
    flat = np.arange(np.prod(dimensions_ijk))  # vtk memory: i fastest
    array = flat.reshape(tuple(reversed(dimensions_ijk)))
    grid = volumes.grid_from_matrix(np.eye(4), array.shape)
    assert grid.size_ijk == dimensions_ijk
    i, j, k = 4, 2, 1
    assert array[k, j, i] == i + dimensions_ijk[0] * (j + dimensions_ijk[1] * k)


# --- segmentations ---------------------------------------------------------------------------


def test_reference_geometry_text_round_trip(oblique_grid):
    text = segmentations.geometry_text(oblique_grid)
    assert text.count(segmentations.GEOMETRY_SEPARATOR) == 22 and text.endswith(";")
    grid = segmentations.grid_from_geometry_text(text)
    assert grid.same_as(oblique_grid), grid.describe_difference(oblique_grid)


def test_reference_geometry_with_an_extent_not_starting_at_zero():
    matrix = np.diag([-2.0, -2.0, 3.0, 1.0])  # RAS, 2 x 2 x 3 mm
    numbers = [*matrix.reshape(-1), 10, 19, 0, 4, 5, 6]
    grid = segmentations.grid_from_geometry_text("".join(f"{v:g};" for v in numbers))
    assert grid.shape == (2, 5, 10)
    np.testing.assert_allclose(grid.origin, [20.0, 0.0, 15.0])  # voxel (10, 0, 5), in LPS
    np.testing.assert_allclose(grid.spacing, [2, 2, 3])


def test_a_segmentation_on_another_grid_is_refused(oblique_grid):
    moved = Grid(
        oblique_grid.shape, oblique_grid.origin + 0.5, oblique_grid.spacing, oblique_grid.direction
    )
    segmentations.require_segmentation_grid(None, oblique_grid)
    segmentations.require_segmentation_grid(oblique_grid, oblique_grid)
    with pytest.raises(GridMismatchError, match="origin"):
        segmentations.require_segmentation_grid(moved, oblique_grid)


# --- markups -----------------------------------------------------------------------------


def test_box_to_roi_geometry_and_back():
    box = markups.PhysicalBox([-20.0, 35.5, -110.0], [42.0, 80.0, -60.25])
    center_ras, size = markups.roi_geometry_from_box(box)
    np.testing.assert_allclose(center_ras, [-11.0, -57.75, -85.125])  # LPS centre, x/y negated
    np.testing.assert_allclose(size, [62.0, 44.5, 49.75])
    back = markups.box_from_roi_geometry(center_ras, size, np.eye(4))
    np.testing.assert_allclose(back.minimum, box.minimum)
    np.testing.assert_allclose(back.maximum, box.maximum)


def test_roi_geometry_to_box():
    box = markups.box_from_roi_geometry([10.0, -20.0, 30.0], [4.0, 6.0, 8.0])
    np.testing.assert_allclose(box.minimum, [-12.0, 17.0, 26.0])
    np.testing.assert_allclose(box.maximum, [-8.0, 23.0, 34.0])


def test_rotated_roi_and_inverted_box_are_refused(oblique_grid):
    with pytest.raises(ValueError, match="axis-aligned"):
        markups.box_from_roi_geometry([0, 0, 0], [1, 1, 1], oblique_grid.direction)
    with pytest.raises(ValueError, match="exceeds"):
        markups.PhysicalBox([0, 0, 1], [1, 1, 0])


# --- DICOM identity ------------------------------------------------------------------------


def test_dicom_identity_from_slicers_values(oblique_grid):
    from deepliver.io.series_identity import series_fingerprint

    assert dicom_identity.identity_from_values("1.2", "", "1.2.3") is None
    uids = [f"1.2.3.{k}" for k in range(oblique_grid.shape[0])]
    identity = dicom_identity.identity_from_values("1.2", "1.2.3", "  ".join(uids) + " ")
    assert identity.sop_uids == tuple(uids)
    assert identity.fingerprint(oblique_grid) == series_fingerprint(uids, oblique_grid)
    assert identity.fingerprint(Grid((1, 2, 3))) is None  # not one UID per slice
    assert "1.2.3" in identity.describe()


# --- dependencies --------------------------------------------------------------------------

SLICER_5_12 = {  # what Slicer 5.12 ships (SuperBuild/External_python-*.cmake at v5.12.0)
    "numpy": "2.4.6",
    "scipy": "1.17.1",
    "SimpleITK": "2.5.5",
    "pydicom": "3.0.2",
    "pillow": "12.0.0",  # SuperBuild/requirements/python-dicom-requirements.txt
}


def test_requirements_cover_the_cores_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    needed = {
        dependencies.canonical_name(r.split(";")[0].split("=")[0].split(">")[0].split("<")[0])
        for r in project["project"]["dependencies"]
    }
    listed = {
        dependencies.canonical_name(line.split("=")[0].split(">")[0].split("<")[0])
        for line in dependencies.read_requirements()
    }
    assert needed <= listed, f"missing from requirements-slicer.txt: {sorted(needed - listed)}"


def test_plan_on_a_fresh_slicer():
    requirements = dependencies.read_requirements()
    plan = dependencies.plan_install(requirements, SLICER_5_12, need_torch=True)
    assert plan.torch == {"torch": ">=2.1", "torchvision": ">=0.16"}
    assert sorted(plan.pip) == [
        "highdicom>=0.28",
        "jsonschema>=4.20",
        "matplotlib>=3.8",
        "monai>=1.4",
        "opencv-python-headless>=4.8",
        "pylibjpeg-openjpeg>=2.3",
        "pylibjpeg>=2.0",
        "slicerio>=1.4",
        "tqdm>=4.66",
    ]
    assert not plan.slicer_owned
    assert "PyTorch" in plan.describe() and plan.installs
    # Slicer's own packages are never installed; one that does not fit is reported.
    old = dependencies.plan_install(requirements, {**SLICER_5_12, "pydicom": "2.4.4"})
    assert not any(name in line for line in old.pip for name in ("numpy", "pydicom", "scipy"))
    assert old.slicer_owned == ["pydicom 2.4.4 (DeepLiver needs pydicom>=3.0)"]


def test_plan_leaves_torch_alone_unless_needed_and_accepts_cuda_builds():
    requirements = ["torch>=2.1", "torchvision>=0.16", "tqdm>=4.66"]
    plan = dependencies.plan_install(requirements, {"tqdm": "4.67.1"}, need_torch=False)
    assert not plan.installs
    installed = {"torch": "2.5.1+cu121", "torchvision": "0.20.1+cu121", "tqdm": "4.67.1"}
    assert not dependencies.plan_install(requirements, installed, need_torch=True).installs
    old = dependencies.plan_install(requirements, {**installed, "torch": "1.13.0"})
    assert old.torch == {"torch": ">=2.1"}


def test_plan_skips_lines_for_other_platforms_and_normalises_names():
    plan = dependencies.plan_install(
        ["pywin32>=300; sys_platform == 'nonexistent'", "Pylibjpeg_OpenJPEG>=2.3"],
        {"pylibjpeg-openjpeg": "2.4.0"},
    )
    assert not plan.installs and not plan.slicer_owned


def test_requirements_file_reading(tmp_path):
    path = tmp_path / "r.txt"
    path.write_text("# comment\n\n--index-url https://x\ntqdm>=4  # progress\n", encoding="utf-8")
    assert dependencies.read_requirements(path) == ["tqdm>=4"]


def test_already_imported_packages_need_a_restart():
    modules = {"numpy": object(), "openjpeg": object()}
    names = ["numpy", "pylibjpeg-openjpeg", "tqdm"]
    assert dependencies.already_imported(names, modules) == ["numpy", "pylibjpeg-openjpeg"]


# --- runner --------------------------------------------------------------------------------


def test_find_python_prefers_python_slicer():
    def which(name):
        return "/opt/Slicer/bin/PythonSlicer" if name == "PythonSlicer" else None

    assert runner.find_python(which=which) == "/opt/Slicer/bin/PythonSlicer"
    beside = runner.find_python(
        which=lambda name: None,
        executable="/opt/Slicer/bin/python-real",
        exists=lambda path: path == "/opt/Slicer/bin/PythonSlicer",
        windows=False,
    )
    assert beside == "/opt/Slicer/bin/PythonSlicer"
    plain = runner.find_python(
        which=lambda name: None, executable="/usr/bin/python3", exists=lambda path: False
    )
    assert plain == "/usr/bin/python3"


def test_child_environment_puts_the_package_first():
    base = {"PYTHONPATH": os.pathsep.join(["/a", "/pkg", "/b"]), "HOME": "/home/x"}
    env = runner.child_environment(base, "/pkg")
    assert env["PYTHONPATH"].split(os.pathsep) == ["/pkg", "/a", "/b"]
    assert env["HOME"] == "/home/x" and base["PYTHONPATH"].startswith("/a")
    assert runner.child_environment({}, "/pkg")["PYTHONPATH"] == "/pkg"


def test_events_as_shown_in_the_widgets():
    from deepliver.progress import ProgressEvent

    shown = runner.display_for(ProgressEvent("progress", "reading", 0.426, "12 of 30 files"))
    assert shown == runner.Display(43, "reading: 12 of 30 files")
    assert runner.display_for(ProgressEvent("progress", "writing", None)).percent is None
    assert runner.display_for(ProgressEvent("result", outputs={"a": 1})).percent == 100
    assert runner.display_for(ProgressEvent("error", message="no series")).text == (
        "Error: no series"
    )
    assert runner.display_for(ProgressEvent("log", message="found 3")) == runner.Display(None, None)
    assert runner.finished_text(0, None) == "Done."
    assert runner.finished_text(-9, "cancelled") == "Cancelled."
    assert runner.finished_text(1, "deepliver: error: x") == "Failed: deepliver: error: x"
    summary = runner.outputs_summary({"series": [1, 2], "unused_files": [], "out": "/x"})
    assert summary == "series: 2; unused files: 0; out: /x"
