"""`deepliver evaluate` and `deepliver compare` as a user runs them, on real files: pairing,
grid rules, bad label values, the report's numbers against an independent computation."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from cli_helpers import deepliver
from geometry_helpers import stored_as
from scipy import ndimage
from store_helpers import phantom_series

from deepliver.annotation.segmentation import Segmentation
from deepliver.annotation.store import AnnotationStore
from deepliver.errors import DeepLiverError
from deepliver.evaluation.cases import find_labels, pair
from deepliver.evaluation.evaluate import evaluate_paths
from deepliver.io.dicom_seg import write_dicom_seg
from deepliver.io.image_files import write_image
from deepliver.io.seg_nrrd import write_seg_nrrd
from deepliver.phantom import PhantomSpec, make_phantom
from deepliver.volume import Box, Grid, GridMismatchError, Volume


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(PhantomSpec(seed=3, size=(64, 64, 24), n_tumors=(3, 3)))


def dice(a, b) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def worse(labels: Volume) -> Volume:
    """The truth with its largest lesion turned into liver and the liver (not the tumors)
    eroded by one voxel."""
    array = labels.array.copy()
    components, _ = ndimage.label(array == 2, structure=np.ones((3, 3, 3)))
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    array[components == np.argmax(sizes)] = 1
    array[(array == 1) & ~ndimage.binary_erosion(array > 0)] = 0
    return labels.with_array(array)


def lesion_count(labels: np.ndarray) -> int:
    return ndimage.label(labels == 2, structure=np.ones((3, 3, 3)))[1]


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_cases_pair_by_name_prefer_one_format_and_list_the_rest(tmp_path, phantom):
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    for name in ("case01", "case02", "case03"):
        write_image(phantom.labels, truth / f"{name}.nii.gz")
    # What `deepliver segment -o pred/case01` leaves: labels in two formats, and a CT beside.
    write_image(phantom.labels, pred / "case01" / "labels.nii.gz")
    write_seg_nrrd(Segmentation.from_label_map(phantom.labels), pred / "case01" / "labels.seg.nrrd")
    write_image(phantom.ct, pred / "case01" / "ct.nii.gz")
    write_image(phantom.labels, pred / "case02.nii.gz")
    write_image(phantom.labels, pred / "case09.nii.gz")

    predictions = find_labels(pred, "prediction")
    assert [s.name for s in predictions] == ["case01", "case02", "case09"]
    assert predictions[0].where.endswith("labels.nii.gz")  # the preferred format
    assert predictions[0].ct_path == pred / "case01" / "ct.nii.gz"
    pairing = pair(predictions, find_labels(truth, "truth"))
    assert [(p.name, t.name) for p, t in pairing.pairs] == [
        ("case01", "case01"),
        ("case02", "case02"),
    ]
    assert pairing.prediction_only == ["case09"]
    assert pairing.truth_only == ["case03"]


def test_two_files_are_one_case_whatever_their_names(tmp_path, phantom):
    """`deepliver segment` names its file labels.nii.gz; the truth beside a series rarely is."""
    truth, predicted = tmp_path / "liver_seg.nrrd", tmp_path / "out" / "labels.nii.gz"
    write_image(phantom.labels, truth)
    write_image(worse(phantom.labels), predicted)
    evaluation = evaluate_paths(predicted, truth)
    liver = next(r for r in evaluation.rows if r["structure"] == "liver")
    expected = dice(worse(phantom.labels).array > 0, phantom.labels.array > 0)
    assert liver["case"] == "liver_seg" and liver["dice"] == pytest.approx(expected, 1e-3)
    assert evaluation.unmatched == {"prediction only": [], "truth only": []}
    with pytest.raises(DeepLiverError, match="no case of"):  # folders still pair by name
        evaluate_paths(predicted.parent, tmp_path)


def test_lesion_sizes_are_axial_in_a_sagittal_file(tmp_path):
    """A lesion 16 mm across and 40 mm tall is 10-20 mm, also where the file stores sagittal
    slices (their planes hold its height)."""
    grid = Grid((40, 40, 40), (0.0, 0.0, 0.0), (1.0, 1.0, 1.5))
    k, j, i = np.indices(grid.shape)
    points = grid.index_to_physical(np.stack([i, j, k], axis=-1)) - grid.center()
    inside = (points[..., 0] ** 2 + points[..., 1] ** 2) / 8**2 + points[..., 2] ** 2 / 20**2 <= 1
    labels = Volume(np.where(inside, 2, 1).astype(np.uint8), grid)
    sagittal = stored_as(labels, (2, 0, 1), (False, False, False))
    write_image(sagittal, tmp_path / "truth.nii.gz")
    write_image(sagittal, tmp_path / "prediction.nii.gz")
    evaluation = evaluate_paths(tmp_path / "prediction.nii.gz", tmp_path / "truth.nii.gz")
    found = {(r["rule"], r["size_class"]): r["tp"] for r in evaluation.lesion_rows}
    assert found["lits", "10-20 mm"] == 1 and found["lits", ">20 mm"] == 0


def test_dicom_seg_pairs_with_a_store_series_by_series_uid(tmp_path):
    series = phantom_series(tmp_path / "dicom", seed=5)
    store = AnnotationStore(tmp_path / "store")
    store.save(series.identity, series.grid, series.segmentation, reader="dr.a", status="complete")
    # Fewer lesions than the truth, written under a name that matches nothing.
    predicted = Segmentation.from_label_map(
        series.labels.with_array(np.where(series.labels.array == 2, 1, series.labels.array))
    )
    pred = tmp_path / "pred"
    write_dicom_seg(predicted, series.folder, pred / "whatever.dcm")

    evaluation = evaluate_paths(pred, tmp_path / "store")
    assert {row["case"] for row in evaluation.rows} == {series.identity.series_uid}
    liver = next(r for r in evaluation.rows if r["structure"] == "liver")
    tumor = next(r for r in evaluation.rows if r["structure"] == "tumor")
    assert liver["dice"] == pytest.approx(1.0)
    assert tumor["empty"] == "prediction" and tumor["dice"] == 0.0 and tumor["hd_mm"] is None
    everything = [r for r in evaluation.lesion_rows if r["size_class"] == "all"]
    assert lesion_count(series.labels.array) >= 1
    assert {r["fn"] for r in everything} == {lesion_count(series.labels.array)}
    assert {r["tp"] for r in everything} == {0}


def test_evaluate_report_numbers_match_an_independent_computation(tmp_path, phantom):
    truth, pred, out = tmp_path / "truth", tmp_path / "pred", tmp_path / "report"
    predicted = worse(phantom.labels)
    write_image(phantom.labels, truth / "a.nii.gz")
    write_image(predicted, pred / "a.nii.gz")
    write_image(phantom.labels, truth / "b.nii.gz")
    write_image(phantom.labels, pred / "b.nii.gz")  # perfect
    write_image(phantom.labels, truth / "lonely.nii.gz")

    result = deepliver("evaluate", "--pred", pred, "--truth", truth, "-o", out)
    assert "lonely" in result.stdout + result.stderr  # the unmatched case is named

    rows = {(r["case"], r["structure"]): r for r in read_rows(out / "metrics.csv")}
    assert set(rows) == {("a", "liver"), ("a", "tumor"), ("b", "liver"), ("b", "tumor")}
    truth_a, pred_a = phantom.labels.array, predicted.array
    assert float(rows["a", "liver"]["dice"]) == pytest.approx(dice(pred_a > 0, truth_a > 0), 1e-3)
    assert float(rows["a", "tumor"]["dice"]) == pytest.approx(dice(pred_a == 2, truth_a == 2), 1e-3)
    assert float(rows["b", "tumor"]["dice"]) == 1.0 and float(rows["b", "tumor"]["hd_mm"]) == 0
    voxel_ml = float(np.prod(phantom.labels.grid.spacing)) / 1000
    assert float(rows["a", "liver"]["volume_truth_ml"]) == pytest.approx(
        (truth_a > 0).sum() * voxel_ml, rel=1e-3
    )
    lesions = [r for r in read_rows(out / "lesions.csv") if r["size_class"] == "all"]
    lits_a = next(r for r in lesions if r["case"] == "a" and r["rule"] == "lits")
    lesions_a = lesion_count(truth_a)
    assert lesions_a >= 2
    assert (int(lits_a["tp"]), int(lits_a["fn"])) == (lesions_a - 1, 1)  # the removed one
    summary = (out / "summary.md").read_text()
    assert "lonely" in summary and "Conventions" in summary
    for png in ("dice_boxplot.png", "hd95_boxplot.png", "worst_cases.png"):
        assert (out / png).stat().st_size > 1000


def test_evaluate_refuses_bad_label_values_naming_the_file(tmp_path, phantom):
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    write_image(phantom.labels, truth / "a.nii.gz")
    write_image(phantom.labels.with_array(phantom.labels.array * 5), pred / "a.nii.gz")
    result = deepliver("evaluate", "--pred", pred, "--truth", truth, "-o", tmp_path / "r", expect=1)
    assert "a.nii.gz" in result.stderr and "10" in result.stderr
    assert not (tmp_path / "r" / "metrics.csv").exists()


def test_grids_exact_paste_refusal_and_resampling_on_request(tmp_path, phantom):
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    write_image(phantom.labels, truth / "a.nii.gz")
    # A crop on the same lattice (as a DICOM SEG without empty frames) is pasted back exactly.
    box = Box.around(phantom.labels.array > 0)
    write_image(phantom.labels.crop(box), pred / "a.nii.gz")
    exact = evaluate_paths(pred, truth)
    assert all(r["dice"] == 1.0 for r in exact.rows) and not exact.notes

    # Another spacing: refused, naming the case and what differs; resampled when asked.
    coarse = phantom.labels.resampled_to_spacing((11.0, 11.0, 13.0), label=True)
    write_image(coarse, pred / "a.nii.gz")
    with pytest.raises(GridMismatchError, match="case a .*spacing"):
        evaluate_paths(pred, truth)
    resampled = evaluate_paths(pred, truth, resample=True)
    assert "nearest neighbour" in resampled.notes[0]
    liver = next(r for r in resampled.rows if r["structure"] == "liver")
    assert 0.6 < liver["dice"] < 0.99


def test_evaluate_with_nothing_to_pair_names_both_sides(tmp_path, phantom):
    write_image(phantom.labels, tmp_path / "truth" / "x.nii.gz")
    write_image(phantom.labels, tmp_path / "pred" / "y.nii.gz")
    with pytest.raises(DeepLiverError, match="prediction cases: y; truth cases: x"):
        evaluate_paths(tmp_path / "pred", tmp_path / "truth")


def test_compare_runs_the_bundled_models_on_held_out_phantoms(tmp_path):
    out = tmp_path / "report"
    result = deepliver(
        "compare", "--models", "unet2d", "--data", "phantom:2", "--size", "96", "96", "40",
        "-o", out, "--device", "cpu", "--progress", "jsonl",
    )  # fmt: skip
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[-1]["event"] == "result"
    rows = read_rows(out / "metrics.csv")
    expected = {("unet2d", f"phantom-{s:02d}", part) for s in (0, 1) for part in ("liver", "tumor")}
    assert {(r["model"], r["case"], r["structure"]) for r in rows} == expected
    liver = [float(r["dice"]) for r in rows if r["structure"] == "liver"]
    assert min(liver) > 0.5  # the bundled liver model finds the liver
    summary = (out / "summary.md").read_text()
    assert "unet2d" in summary and "Jaccard" in summary
    assert (out / "per_case_dice.png").is_file() and (out / "lesion_detection.png").is_file()


def test_compare_on_a_dataset_folder_refuses_a_label_on_another_grid(tmp_path, phantom):
    data = tmp_path / "dataset"
    write_image(phantom.ct, data / "imagesTs" / "liver_7_0000.nii.gz")
    grid = phantom.labels.grid
    shifted = Volume(phantom.labels.array, Grid(grid.shape, grid.origin, (2, 2, 3), grid.direction))
    write_image(shifted, data / "labelsTs" / "liver_7.nii.gz")
    result = deepliver("compare", "--data", data, "-o", tmp_path / "r", expect=1)
    assert "liver_7.nii.gz" in result.stderr and "grid" in result.stderr


def test_compare_names_the_models_there_are(tmp_path):
    result = deepliver("compare", "--models", "nosuch", "--data", "phantom:1", expect=1)
    assert "nosuch" in result.stderr and "liver-unet2d" in result.stderr
