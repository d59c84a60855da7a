"""The Slicer-free parts of the Inference module's run (DeepLiverSlicer/inference.py), and the
run itself as the module starts it: a real background ``deepliver segment`` child."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepliver.annotation.record import Source
from deepliver.annotation.store import AnnotationStore
from deepliver.errors import DeepLiverError
from deepliver.inference.lesions import Lesion
from deepliver.inference.outputs import write_outputs
from deepliver.io.series_identity import SeriesIdentity
from deepliver.models.card import ModelCard
from deepliver.phantom import PhantomSpec, make_phantom
from deepliver.volume import Grid, Volume
from DeepLiverSlicer import inference, runner


def _card(name, stage, architecture="unet2d"):
    return ModelCard(
        name=name,
        version="0.1.0",
        stage=stage,
        architecture=architecture,
        spacing_mm=(3.0, 3.0, 5.0),
        hu_window=(-250.0, 350.0),
        labels={0: "background", 1: stage},
        in_channels=1 if architecture == "unet3d" else 3,
    )


def _lesion(number, low=(0.0, 0.0, 0.0), high=(10.0, 12.0, 15.0), probability=None):
    return Lesion(
        id=number,
        volume_ml=1.23456,
        longest_axial_diameter_mm=14.04,
        mean_hu=61.6,
        centroid_lps=(5.0, 6.0, 7.5),
        box_min_lps=low,
        box_max_lps=high,
        voxels=42,
        mean_probability=probability,
    )


def test_model_families_come_from_the_liver_cards():
    cards = [
        _card("liver-unet2d", "liver"),
        _card("tumor-unet2d", "tumor"),
        _card("liver-unet3d", "liver", "unet3d"),
        _card("tumor-unet3d", "tumor", "unet3d"),
        _card("liver-unet2d", "liver"),  # the same family twice: offered once
        _card("experimental", "liver"),  # not a liver-<family> name: not a --model choice
        _card("liver-fine-unet2d", "liver-fine"),  # a stage of the unet2d family, not a family
    ]
    assert inference.model_families(cards) == ["unet2d", "unet3d"]
    assert inference.model_families([]) == []


def test_bundled_families_include_the_default_model():
    families, problem = inference.bundled_families()
    assert problem is None
    assert "unet2d" in families  # `deepliver segment`'s default --model


def test_bundled_families_say_where_the_models_are_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPLIVER_MODELS", str(tmp_path / "nowhere"))
    families, problem = inference.bundled_families()
    assert families == [] and "nowhere" in problem
    monkeypatch.setenv("DEEPLIVER_MODELS", str(tmp_path))
    assert inference.bundled_families() == ([], "no bundled liver model found")


def test_segment_arguments():
    args = inference.segment_args(Path("/t/input.nrrd"), Path("/t/result"), "unet3d", "cpu")
    assert args == ["/t/input.nrrd", "-o", "/t/result", "--model", "unet3d", "--device", "cpu"]
    with pytest.raises(DeepLiverError, match="no model"):
        inference.segment_args("in.nrrd", "out", "", "auto")
    with pytest.raises(DeepLiverError, match="device"):
        inference.segment_args("in.nrrd", "out", "unet2d", "tpu")


def test_detector_arguments_and_names():
    args = inference.segment_args("in.nrrd", "out", "unet2d", "auto", "yolo")
    assert args[-2:] == ["--detector", "yolo"]
    assert "--detector" not in inference.segment_args("in.nrrd", "out", "unet2d", "auto", None)
    cards = [
        _card("liver-unet2d", "liver"),
        _card("tumor-yolo", "detection", "yolo"),
        _card("tumor-fasterrcnn", "detection", "fasterrcnn"),
        _card("my-yolo", "detection", "yolo"),  # not tumor-<detector>: not a --detector choice
    ]
    assert inference.detector_names(cards) == ["yolo", "fasterrcnn"]


def test_only_ct_series_are_segmented():
    assert inference.modality_problem("CT") is None
    assert inference.modality_problem("ct") is None
    assert inference.modality_problem(None) is None  # not from DICOM: nothing to check
    assert inference.modality_problem("") is None
    assert "MR, not CT" in inference.modality_problem("MR")


def test_lesion_rows_names_and_boxes():
    lesions = [
        _lesion(1),
        _lesion(2, (-5.0, 1.0, 2.0), (5.0, 3.0, 4.0)),
        _lesion(3, probability=0.876),
    ]
    assert inference.lesion_rows(lesions)[0] == ("1", "1.23", "14.0", "62", "")  # truth: no model
    assert inference.lesion_rows(lesions)[2][-1] == "0.88"
    assert len(inference.lesion_rows(lesions)[0]) == len(inference.LESION_COLUMNS)
    assert [inference.lesion_name(x) for x in lesions] == ["Lesion 1", "Lesion 2", "Lesion 3"]
    boxes = inference.lesion_boxes(lesions, ["Liver", "Tumor 1", "Tumor 2"])
    assert boxes == [
        {"segment": "Tumor 1", "min": [0.0, 0.0, 0.0], "max": [10.0, 12.0, 15.0]},
        {"segment": "Tumor 2", "min": [-5.0, 1.0, 2.0], "max": [5.0, 3.0, 4.0]},
    ]
    assert inference.lesion_rows([]) == [] and inference.lesion_boxes([], ["Liver"]) == []


def test_model_source_names_every_model():
    summary = {
        "models": [
            {"name": "liver-unet2d", "version": "0.1.0"},
            {"name": "tumor-unet2d", "version": "0.2.0"},
        ]
    }
    source = inference.model_source(summary)
    assert source == {
        "kind": "model",
        "name": "liver-unet2d+tumor-unet2d",
        "version": "0.1.0+0.2.0",
    }
    assert Source.from_dict(source).is_model  # what the store takes
    with pytest.raises(DeepLiverError, match="no model"):
        inference.model_source({"models": []})


def test_result_text():
    result = inference.InferenceResult(
        None, [_lesion(1)], {"liver_volume_ml": 1442.3, "models": [{"name": "liver-unet2d"}]}
    )
    assert inference.result_text(result) == "Done: liver 1442 mL, 1 lesion(s) (liver-unet2d)."
    assert inference.result_text(result, "Saved.").endswith("(liver-unet2d). Saved.")
    empty = inference.InferenceResult(None, [], {"liver_volume_ml": 0.0, "models": []})
    assert inference.result_text(empty) == "Done: no liver found, 0 lesion(s)."


def test_read_result_refuses_missing_outputs():
    with pytest.raises(DeepLiverError, match="labels_seg_nrrd"):
        inference.read_result({"lesions_json": "x", "summary": "y"})
    with pytest.raises(DeepLiverError):
        inference.read_result(None)


def _identity(grid: Grid) -> SeriesIdentity:
    return SeriesIdentity.build(
        patient_id="P1",
        study_uid="1.2.3",
        series_uid="1.2.3.4",
        modality="CT",
        description="phantom",
        sop_uids=tuple(f"1.2.3.4.{k + 1}" for k in range(grid.shape[0])),
        grid=grid,
    )


def test_written_outputs_read_back_and_store_as_a_model_revision(tmp_path):
    """What ``finish`` does with the files, without the network: a phantom's own labels
    written as ``deepliver segment`` writes them, read back, stored as a model revision."""
    phantom = make_phantom(PhantomSpec(seed=3, size=(48, 40, 20), n_tumors=(2, 2)))
    models = [{"name": "liver-unet2d", "version": "0.1.0"}, {"name": "tumor-x", "version": "2"}]
    paths = write_outputs(phantom.ct, phantom.labels, tmp_path / "out", models=models)
    result = inference.read_result({k: str(v) for k, v in paths.items()})
    names = [s.name for s in result.segmentation.segments]
    assert names[0] == "Liver" and len(result.lesions) == len(names) - 1 >= 1
    assert result.segmentation.grid.same_as(phantom.ct.grid)
    boxes = inference.lesion_boxes(result.lesions, names)
    assert [b["segment"] for b in boxes] == names[1:]

    store = AnnotationStore(tmp_path / "store")
    (tmp_path / "store").mkdir()
    revision = store.save(
        _identity(phantom.ct.grid),
        phantom.ct.grid,
        result.segmentation,
        reader=inference.MODEL_READER,
        source=inference.model_source(result.summary),
        boxes=boxes,
    )
    latest = store.latest("1.2.3.4", source="model")
    assert latest.number == revision.number
    assert latest.source.name == "liver-unet2d+tumor-x"
    assert len(latest.boxes) == len(result.lesions)
    assert result.detections is None


def test_detector_boxes_read_back(tmp_path):
    from deepliver.detection.detect import DetectedLesion, write_detections

    phantom = make_phantom(PhantomSpec(seed=3, size=(48, 40, 20), n_tumors=(1, 1)))
    paths = write_outputs(phantom.ct, phantom.labels, tmp_path)
    found = [DetectedLesion(1, 0.91, 4, (-10.0, 5.0, 2.5), (4.0, 19.0, 12.5))]
    paths.update(write_detections(found, tmp_path, {"name": "tumor-yolo", "version": "1"}))
    result = inference.read_result({k: str(v) for k, v in paths.items()})
    assert result.detections == found
    assert "1 detector box(es)" in inference.result_text(result)
    (tmp_path / "detections.json").write_text("{}")
    with pytest.raises(DeepLiverError, match="detections.json"):
        inference.read_result({k: str(v) for k, v in paths.items()})


def test_prepare_writes_the_volume_and_cleanup_removes_it(tmp_path):
    from deepliver.io.image_files import read_image

    grid = Grid((5, 6, 7), (-10.5, 20.25, 3.0), (0.8, 0.9, 2.5))
    volume = Volume(np.arange(np.prod(grid.shape), dtype=np.int16).reshape(grid.shape), grid)
    run = inference.prepare(volume, parent=str(tmp_path))
    back = read_image(run.input)
    assert back.grid.same_as(grid)
    np.testing.assert_array_equal(back.array, volume.array)
    assert run.output.parent == run.workdir and not run.output.exists()
    inference.cleanup(run)
    assert not run.workdir.exists()
    inference.cleanup(None)


def test_detection_through_a_real_child_process(tmp_path):
    """The module's run with the child started as the Qt runner starts it: the volume as a
    temporary NRRD, `deepliver segment` in the background, its result read back on the grid."""
    from deepliver.background import BackgroundCommand, deepliver_argv

    phantom = make_phantom(PhantomSpec(seed=11, size=(96, 96, 32), n_tumors=(2, 2)))
    run = inference.prepare(phantom.ct, parent=str(tmp_path))
    families, _ = inference.bundled_families()
    args = inference.segment_args(run.input, run.output, families[0], "cpu")
    python = runner.find_python(which=lambda name: None)
    env = runner.child_environment(os.environ, runner.package_root())
    child = BackgroundCommand(deepliver_argv(python, "segment", *args), env=env)
    child.start()
    assert child.wait(300) == 0, child.error_message()
    result = inference.read_result(child.result())
    assert result.segmentation.grid.same_as(phantom.ct.grid)
    liver = result.segmentation.mask("Liver")
    reference = phantom.labels.array > 0
    dice = 2.0 * np.logical_and(liver, reference).sum() / (liver.sum() + reference.sum())
    assert dice >= 0.85
    assert len(inference.lesion_rows(result.lesions)) == result.summary["lesion_count"]
    assert "Done: liver" in inference.result_text(result)
    inference.cleanup(run)
