"""Evaluation report: CSVs read back, summary numbers computed by hand, PNGs that show something."""

import csv
import statistics

import numpy as np
import pytest
from PIL import Image

from deepliver.errors import DeepLiverError
from deepliver.evaluation.plots import PLOTS, drawn_dice, worst_case_names
from deepliver.evaluation.report import (
    METRIC_COLUMNS,
    choose_slice,
    seed_table,
    snapshot,
    summary_markdown,
    write_report,
)
from deepliver.evaluation.results import Evaluation

CONVENTIONS = "Dice of two empty masks is 1; distances need both masks (test conventions)."
MODELS = ("unet", "cascade")
CASES = ("c1", "c2", "c3")


def metric_row(model, case, structure, tp, fp, fn, tn, hd95=None):
    """A row as the metrics code writes it: ratios from the counts, None where undefined."""
    truth, prediction = tp + fn, tp + fp
    empty = {(0, 0): "both", (0, 1): "truth", (1, 0): "prediction"}.get(
        (int(truth > 0), int(prediction > 0)), "none"
    )
    total = tp + fp + fn + tn
    distances = hd95 is not None
    return {
        "model": model,
        "case": case,
        "structure": structure,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "dice": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0,
        "jaccard": tp / (tp + fp + fn) if tp + fp + fn else 1.0,
        "precision": tp / prediction if prediction else None,
        "recall": tp / truth if truth else None,
        "specificity": tn / (tn + fp),
        "accuracy": (tp + tn) / total,
        "hd_mm": hd95 * 1.5 if distances else None,
        "hd95_mm": hd95,
        "assd_mm": hd95 / 3 if distances else None,
        "surface_dice": 0.8 if distances else None,
        "volume_truth_ml": truth * 0.001,
        "volume_prediction_ml": prediction * 0.001,
        "volume_difference_ml": (prediction - truth) * 0.001,
        "empty": empty,
    }


def lesion_row(model, case, rule, size_class, tp, fp, fn):
    return {"model": model, "case": case, "rule": rule, "size_class": size_class} | {
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def labels_3d(tumor_slices=(), liver_slices=(), shape=(5, 24, 20)) -> np.ndarray:
    """Liver discs on ``liver_slices``; on ``tumor_slices`` {k: radius}, a tumor inside it."""
    labels = np.zeros(shape, np.uint8)
    y, x = np.indices(shape[1:])
    distance = np.hypot(y - shape[1] / 2, x - shape[2] / 2)
    for k in liver_slices:
        labels[k][distance < 8] = 1
    for k, radius in dict(tumor_slices).items():
        labels[k][distance < radius] = 2
    return labels


@pytest.fixture(scope="module")
def evaluation() -> Evaluation:
    rows = [
        # unet: a good case, a tumor the prediction missed (failure), a case with no tumor.
        metric_row("unet", "c1", "liver", 900, 40, 60, 9000, hd95=4.2),
        metric_row("unet", "c1", "tumor", 80, 10, 30, 9880, hd95=3.1),
        metric_row("unet", "c2", "liver", 700, 90, 50, 9160, hd95=7.9),
        metric_row("unet", "c2", "tumor", 0, 0, 50, 9950),
        metric_row("unet", "c3", "liver", 800, 20, 20, 9160, hd95=2.0),
        metric_row("unet", "c3", "tumor", 0, 0, 0, 10000),
        # cascade: tumors found everywhere there are some.
        metric_row("cascade", "c1", "liver", 930, 20, 30, 9020, hd95=2.5),
        metric_row("cascade", "c1", "tumor", 100, 5, 10, 9885, hd95=1.4),
        metric_row("cascade", "c2", "liver", 720, 30, 30, 9220, hd95=3.3),
        metric_row("cascade", "c2", "tumor", 20, 40, 30, 9910, hd95=9.0),
        metric_row("cascade", "c3", "liver", 810, 10, 10, 9170, hd95=1.1),
        metric_row("cascade", "c3", "tumor", 0, 7, 0, 9993),  # a false tumor: failure
    ]
    lesions = []
    for model, found in (("unet", 1), ("cascade", 2)):
        for rule in ("lits", "overlap"):
            lesions += [
                lesion_row(model, "c1", rule, "all", found, 1, 2 - found),
                lesion_row(model, "c1", rule, "<10 mm", 0, 1, 1 if found == 1 else 0),
                lesion_row(model, "c1", rule, "10-20 mm", 1, 0, 0),
                lesion_row(model, "c2", rule, "all", 0, 0, 1),
                lesion_row(model, "c2", rule, ">20 mm", 0, 0, 1),
            ]
    snapshots = []
    for model in MODELS:
        for case, tumor in zip(CASES, ({2: 5}, {1: 3}, {}), strict=True):
            truth = labels_3d(tumor, liver_slices=range(1, 4))
            prediction = labels_3d({k: r - 1 for k, r in tumor.items()}, liver_slices=range(1, 5))
            ct = None if model == "cascade" else np.where(truth > 0, 60.0, -100.0)
            snapshots.append(snapshot(model, case, truth, prediction, ct, (2.5, 0.8, 0.7)))
    return Evaluation(
        rows=rows,
        lesion_rows=lesions,
        snapshots=snapshots,
        models=[
            {"model": "unet", "seconds_per_case": 12.5, "size_mb": 88.0},
            {"model": "cascade", "seconds_per_case": 30.25, "size_mb": None},
        ],
        unmatched={"prediction only": ["extra_07"], "truth only": ["lonely_03", "lonely_04"]},
        notes=["Predictions were resampled onto the truth grid."],
        tolerance_mm=2.0,
    )


@pytest.fixture(scope="module")
def report(evaluation, tmp_path_factory):
    folder = tmp_path_factory.mktemp("report") / "out"
    return folder, write_report(evaluation, folder, CONVENTIONS)


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_report_writes_every_file_and_nothing_half_written(report):
    folder, written = report
    expected = {"metrics", "lesions", "summary", *PLOTS}
    assert set(written) == expected
    assert all(path.is_file() and path.parent == folder for path in written.values())
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in written.values())


def test_metrics_csv_has_one_row_per_model_case_structure_and_blank_missing_values(
    report, evaluation
):
    folder, _ = report
    rows = read_csv(folder / "metrics.csv")
    assert len(rows) == len(MODELS) * len(CASES) * 2
    assert list(rows[0]) == ["model", "case", "structure", *METRIC_COLUMNS]
    failure = next(
        r for r in rows if (r["model"], r["case"], r["structure"]) == ("unet", "c2", "tumor")
    )
    assert failure["empty"] == "prediction"
    assert failure["hd95_mm"] == failure["hd_mm"] == failure["precision"] == ""
    assert float(failure["dice"]) == 0.0 and failure["fn"] == "50"
    good = next(
        r for r in rows if (r["model"], r["case"], r["structure"]) == ("unet", "c1", "tumor")
    )
    assert float(good["dice"]) == pytest.approx(160 / 200, abs=1e-6)
    assert float(good["hd95_mm"]) == pytest.approx(3.1)
    lesions = read_csv(folder / "lesions.csv")
    assert len(lesions) == len(evaluation.lesion_rows)
    assert list(lesions[0]) == ["model", "case", "rule", "size_class", "tp", "fp", "fn"]


def test_summary_shows_hand_computed_statistics(report, evaluation):
    folder, _ = report
    text = (folder / "summary.md").read_text(encoding="utf-8")
    assert text == summary_markdown(evaluation, CONVENTIONS)
    unet_tumor = [r for r in evaluation.rows if r["model"] == "unet" and r["structure"] == "tumor"]
    dice = [r["dice"] for r in unet_tumor]
    table = text.split("### unet — tumor")[1].split("###")[0]
    assert f"| Dice | {statistics.mean(dice):.4f} | {statistics.median(dice):.4f} | 3 |" in table
    # HD95 exists for one case only: its mean is that case's value, over 1 case.
    assert "| HD95 (mm) | 3.10 | 3.10 | 1 |" in table
    assert "Failures (exactly one mask empty): 1: c2 (prediction empty)" in table
    assert "Both empty: 1: c3" in table
    cascade_tumor = text.split("### cascade — tumor")[1].split("###")[0]
    assert "Failures (exactly one mask empty): 1: c3 (truth empty)" in cascade_tumor
    for model in MODELS:
        tumor = [r for r in evaluation.rows if r["model"] == model and r["structure"] == "tumor"]
        tp, fp, fn = (sum(r[k] for r in tumor) for k in ("tp", "fp", "fn"))
        assert (
            f"| {model} | tumor | {tp} | {fp} | {fn} | {2 * tp / (2 * tp + fp + fn):.4f} |" in text
        )
    assert "- prediction only (1): extra_07" in text
    assert "- truth only (2): lonely_03, lonely_04" in text
    assert "Predictions were resampled onto the truth grid." in text
    assert text.split("## Conventions")[1].strip() == CONVENTIONS
    for name in PLOTS:
        assert f"]({name}.png)" in text


def test_summary_lesion_table_pools_counts(report):
    folder, _ = report
    text = (folder / "summary.md").read_text(encoding="utf-8")
    # unet, lits, all sizes: c1 (tp 1, fp 1, fn 1) + c2 (fn 1) -> P 0.5, R 1/3, F1 2/5.
    assert "| unet | lits | all | 1 | 1 | 2 | 0.5000 | 0.3333 | 0.4000 |" in text
    # cascade, overlap, >20 mm: no detection, no false positive -> precision undefined.
    assert "| cascade | overlap | >20 mm | 0 | 0 | 1 | – | 0.0000 | 0.0000 |" in text


def test_seed_table_has_one_row_per_model_and_dashes_for_missing(evaluation):
    lines = seed_table(evaluation).splitlines()
    assert len(lines) == 2 + len(MODELS)
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
        for line in lines[2:]
    }
    assert set(rows) == set(MODELS)
    cascade = dict(zip(header, rows["cascade"], strict=True))
    unet = dict(zip(header, rows["unet"], strict=True))
    assert cascade["Size (MB)"] == "–" and unet["Size (MB)"] == "88.0"
    assert unet["Time per case (s)"] == "12.50"
    assert unet["Hausdorff (mm)"] == f"{3.1 * 1.5:.2f}"  # the one tumor case with distances
    assert unet["Precision"] == "0.8889"  # c1 only: the others predicted no tumor
    assert unet["Lesion F1 (LiTS)"] == "0.4000"
    assert unet["Tumor failures"] == "1/3" and cascade["Tumor failures"] == "1/3"
    assert cascade["Global tumor Dice"] == f"{240 / (240 + 52 + 40):.4f}"


def test_pngs_open_and_show_something(report):
    folder, _ = report
    for name in PLOTS:
        with Image.open(folder / f"{name}.png") as image:
            assert image.format == "PNG"
            assert image.width >= 300 and image.height >= 200, name
            pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
            assert len(np.unique(pixels, axis=0)) > 20, f"{name} looks blank"


def test_worst_cases_rank_failures_first_and_no_tumor_last(evaluation):
    assert worst_case_names(evaluation, "unet") == ["c2", "c1", "c3"]
    assert worst_case_names(evaluation, "cascade") == ["c3", "c2", "c1"]
    assert drawn_dice({"dice": None, "empty": "truth"}) == 0.0
    assert drawn_dice({"dice": None, "empty": "both"}) is None


def test_report_with_many_cases_and_one_model(tmp_path):
    rows = [
        metric_row("solo", f"case_{i:03d}", structure, 50 + i, 5, 5, 1000, hd95=1.0 + i / 10)
        for i in range(45)
        for structure in ("liver", "tumor")
    ]
    written = write_report(Evaluation(rows=rows), tmp_path)
    with Image.open(written["per_case_dice"]) as image:
        assert image.width > 1000  # 45 cases get room
    text = written["summary"].read_text(encoding="utf-8")
    assert "Cases scored: 45" in text and "## Lesion detection\n\nNo lesion rows." in text
    assert "(none given)" in text


def test_snapshot_keeps_the_slice_with_most_tumor():
    truth = labels_3d({1: 3, 3: 6}, liver_slices=range(5))
    prediction = labels_3d({}, liver_slices=range(2))
    ct = np.arange(truth.size, dtype=np.int16).reshape(truth.shape)
    snap = snapshot("m", "c", truth, prediction, ct, spacing_zyx=(3.0, 0.7, 0.9))
    assert snap.slice_index == 3
    assert np.array_equal(snap.truth, truth[3]) and np.array_equal(snap.prediction, prediction[3])
    assert np.array_equal(snap.ct, ct[3]) and snap.spacing_yx == (0.7, 0.9)
    truth[3] = 0  # copies: the snapshot does not hold the volume
    assert snap.truth.any() and snap.truth.base is None


def test_snapshot_falls_back_to_liver_then_prediction_then_middle():
    liver = labels_3d({}, liver_slices=(1,))
    liver[3, :3, :3] = 1  # a smaller liver slice
    assert choose_slice(liver, np.zeros_like(liver)) == 1
    empty = np.zeros((7, 6, 6), np.uint8)
    predicted = empty.copy()
    predicted[5, 1:3, 1:3] = 2
    predicted[2, 1, 1] = 1
    assert snapshot("m", "c", empty, predicted).slice_index == 5
    assert snapshot("m", "c", empty, empty).slice_index == 3
    assert snapshot("m", "c", empty, empty).ct is None


def test_snapshot_refuses_arrays_of_different_shapes():
    with pytest.raises(DeepLiverError, match="one shape"):
        snapshot("m", "c", np.zeros((3, 4, 4)), np.zeros((3, 4, 5)))
    with pytest.raises(DeepLiverError, match="CT"):
        snapshot("m", "c", np.zeros((3, 4, 4)), np.zeros((3, 4, 4)), ct=np.zeros((2, 4, 4)))
