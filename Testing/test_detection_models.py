"""Detectors: slice linking, detection metrics computed by hand, the two networks learning a
box, training and `deepliver segment --detector` end to end."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch
from cli_helpers import deepliver
from geometry_helpers import stored_as

from deepliver.detection.linking import link_slices
from deepliver.detection.losses import assign, yolo_loss
from deepliver.detection.metrics import average_precision, box_iou_3d, lesion_recall
from deepliver.detection.networks import YoloDetector, build_fasterrcnn
from deepliver.detection.operating_point import ScoredScan, choose_operating_point, scan_case
from deepliver.detection.training import DetectionTask, detect, liver_finder, place
from deepliver.errors import DeepLiverError
from deepliver.models.card import (
    ModelCard,
    bundled_models_dir,
    load_card,
    load_model,
    write_card,
)
from deepliver.phantom import make_phantom
from deepliver.training.data import Case, phantom_spec


def boxes(*rows) -> np.ndarray:
    return np.array(rows, dtype=np.float32).reshape(-1, 4)


def test_linking_joins_overlapping_boxes_across_slices_and_bridges_two_gaps():
    per_slice = {
        3: (boxes([10, 10, 20, 20]), np.array([0.9])),
        4: (boxes([11, 10, 21, 21], [50, 50, 60, 60]), np.array([0.8, 0.4])),
        7: (boxes([10, 11, 20, 22]), np.array([0.7])),  # slices 5 and 6 missed: bridged
        11: (boxes([10, 10, 20, 20]), np.array([0.6])),  # three slices later: a new lesion
    }
    tracks = link_slices(per_slice)
    assert [sorted(t.boxes) for t in tracks] == [[3, 4, 7], [11], [4]]
    start, stop = tracks[0].box_ijk()
    assert start.tolist() == [10, 10, 3] and stop.tolist() == [21, 22, 8]
    # Scored by the mean of the four best slices, a missing one counting as 0.
    assert tracks[0].score == pytest.approx(2.4 / 4) and tracks[2].score == pytest.approx(0.4 / 4)


def test_average_precision_by_hand():
    truth = [boxes([0, 0, 10, 10]), boxes()]
    perfect = [(boxes([0, 0, 10, 10]), np.array([0.9])), (boxes(), np.array([]))]
    assert average_precision(perfect, truth) == pytest.approx(1.0)
    # A false positive ranked above the true one: precision 0 then 1/2 at recall 1 -> AP 0.5.
    worse = [(boxes([0, 0, 10, 10]), np.array([0.8])), (boxes([5, 5, 9, 9]), np.array([0.9]))]
    assert average_precision(worse, truth) == pytest.approx(0.5)
    # IoU 50/150 = 1/3 < 0.5: not a hit.
    shifted = [(boxes([5, 0, 15, 10]), np.array([0.9])), (boxes(), np.array([]))]
    assert average_precision(shifted, truth) == pytest.approx(0.0)
    assert average_precision(perfect, [boxes(), boxes()]) is None


def test_lesion_recall_one_to_one_in_3d():
    truth = np.array([[0, 0, 0, 10, 10, 10], [20, 20, 20, 30, 30, 30]], dtype=float)
    predicted = np.array(
        [[1, 1, 1, 10, 10, 10], [0, 0, 0, 10, 10, 11], [50, 50, 50, 60, 60, 60]], dtype=float
    )
    assert box_iou_3d(predicted[:1], truth[:1])[0, 0] == pytest.approx(729 / 1000)
    # Two boxes on lesion 1 count once; the second and the far one are false positives.
    assert lesion_recall(predicted, truth) == (1, 1, 2)
    assert lesion_recall(predicted[:0], truth) == (0, 2, 0)


def synthetic_batch(n: int = 4, size: int = 64):
    """Bright squares on noise, one per image, at known places."""
    generator = np.random.default_rng(0)
    images = generator.uniform(0.0, 0.2, (n, 3, size, size)).astype(np.float32)
    truth = []
    for i in range(n):
        x, y = 8 + 10 * i, 30 - 5 * i
        images[i, :, y : y + 14, x : x + 14] = 0.9
        truth.append(torch.tensor([[x, y, x + 14, y + 14]], dtype=torch.float32))
    return torch.from_numpy(images), truth


def iou(a, b) -> float:
    from torchvision.ops import box_iou

    return float(box_iou(torch.as_tensor(a)[None], torch.as_tensor(b)[None])[0, 0])


def test_yolo_detector_learns_a_box_with_negatives_in_the_batch():
    torch.manual_seed(0)
    images, truth = synthetic_batch()
    images = torch.cat([images, torch.full((2, 3, 64, 64), 0.1)])  # slices without lesions
    truth = truth + [torch.zeros(0, 4), torch.zeros(0, 4)]
    model = YoloDetector(3, (8, 16, 32, 32))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(120):
        optimizer.zero_grad()
        loss = yolo_loss(model, model(images), truth)
        loss.backward()
        optimizer.step()
        first = first if first is not None else loss.item()
    assert loss.item() < first / 3
    model.eval()
    found = model.detect(images, score_threshold=0.3)
    for result, expected in zip(found[:4], truth[:4], strict=True):
        assert len(result["boxes"]) >= 1 and iou(result["boxes"][0], expected[0]) > 0.5
    assert all(len(r["boxes"]) == 0 for r in found[4:])  # nothing on the empty slices


def test_yolo_gives_a_box_to_fitting_anchors_in_its_cell_and_the_two_nearest_neighbours():
    model = YoloDetector(3, (8, 16, 32, 32))
    outputs = model(torch.zeros(1, 3, 64, 64))  # grids 8x8, 4x4, 2x2; 3 anchors each
    box = torch.tensor([[18.0, 42.0, 28.0, 52.0]])  # 10 x 10 px, centre (23, 47)
    pairs = assign(model, outputs, box)
    assert all(torch.equal(b, box[0]) for _, b in pairs)
    cells = set()
    for index, _ in pairs:
        level = 0 if index < 192 else 1 if index < 240 else 2
        offset, side = [(0, 8), (192, 4), (240, 2)][level]
        anchor, rest = divmod(index - offset, side * side)
        cells.add((level, anchor, rest % side, rest // side))  # (level, anchor, x, y)
    # Stride 8: centre cell (2, 5); 23/8 = 2.875 and 47/8 = 5.875, so the right and lower
    # neighbours. Anchors within 4x of 10 px: 5, 8, 12 (stride 8), 16, 24, 34 (stride 16).
    assert {(a, x, y) for level, a, x, y in cells if level == 0} == {
        (a, x, y) for a in range(3) for x, y in [(2, 5), (3, 5), (2, 6)]
    }
    # Stride 16: centre (1, 2) at 1.44, 2.94: the left and lower neighbours; 34 px is 3.4x.
    assert {(a, x, y) for level, a, x, y in cells if level == 1} == {
        (a, x, y) for a in range(3) for x, y in [(1, 2), (0, 2), (1, 3)]
    }
    assert not any(level == 2 for level, *_ in cells)  # 46 px and more: over 4x
    assert assign(model, outputs, torch.zeros(0, 4)) == []


def test_yolo_loss_is_float32_under_mixed_precision():
    """Training on a GPU runs the network under autocast (float16 heads); CPU autocast
    (bfloat16) takes the same path here."""
    model = YoloDetector(3, (8, 16, 32, 32))
    images, truth = synthetic_batch(2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = model(images)
        assert outputs[0].dtype == torch.bfloat16
        loss = yolo_loss(model, outputs, [*truth[:1], torch.zeros(0, 4)])
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert model.heads[0][-1].weight.grad is not None


def test_fasterrcnn_trains_on_slices_with_and_without_boxes():
    torch.manual_seed(0)
    images, truth = synthetic_batch(2)
    targets = [{"boxes": b, "labels": torch.ones(1, dtype=torch.int64)} for b in truth]
    targets.append({"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)})
    images = torch.cat([images, torch.full((1, 3, 64, 64), 0.1)])
    model = build_fasterrcnn(3, (8, 16, 32, 32), 64)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(25):
        optimizer.zero_grad()
        loss = sum(model(list(images), targets).values())
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])
    # The pyramid starts at stride 4, and a lesion of 7-13 pixels is pooled from there.
    pyramid = model.backbone(images)
    assert [f.shape[-1] for f in pyramid.values()] == [16, 8, 4, 2, 1]
    assert model.roi_heads.box_roi_pool.scales[0] == 0.25
    card = ModelCard(
        name="t", version="1", stage="detection", architecture="fasterrcnn",
        spacing_mm=(1.5, 1.5, 2.5), hu_window=(-100, 250), labels={0: "background", 1: "tumor"},
        channels=(8, 16, 32, 32), in_channels=3, roi_size=(64, 64, 1),
    )  # fmt: skip
    results = detect(model, card, (images.numpy() * 255).astype(np.uint8))
    assert len(results) == 3 and all(b.shape[1:] == (4,) for b, _ in results)
    assert model.training  # detect() leaves the mode as it found it


def test_a_small_lesion_is_drawn_about_as_often_as_a_large_one():
    # One case of 200 slices: a lesion on 40 of them (a 40-pixel box), one on 4 (8 pixels).
    target = np.zeros((200, 64, 64), dtype=np.uint8)
    target[2:42, 4:44, 4:44] = 1
    target[150:154, 50:58, 50:58] = 1
    case = Case(0, np.zeros_like(target), target, np.zeros((0, 3), np.int32))
    card = ModelCard(
        name="t", version="1", stage="detection", architecture="yolo",
        spacing_mm=(1.5, 1.5, 2.5), hu_window=(-100, 250), labels={0: "background", 1: "tumor"},
        channels=(8, 16, 32, 32), in_channels=3, roi_size=(64, 64, 1),
    )  # fmt: skip
    task = DetectionTask(card, batch=50)
    rng = np.random.default_rng(0)
    drawn = [b for _ in range(16) for b in task.draw([case], rng)[1]]
    sides = [float(b[0, 2] - b[0, 0]) for b in drawn if len(b)]
    small, large = sides.count(8.0), sides.count(40.0)
    assert small + large == len(sides)
    # Half the draws take a lesion, each lesion half of those (0.25 of all), and the other
    # half a random slice (large 0.10, small 0.01): small / large about 0.26 / 0.35 = 0.74.
    # Drawn slice first, it would be about 0.06 / 0.55.
    assert 0.55 < small / large < 0.95, (small, large)
    assert task.lesion_slices(case).tolist() == [*range(2, 42), *range(150, 154)]


def test_place_puts_a_slice_into_the_canvas_and_crops_a_large_one():
    planes = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4) + 1
    inside = place(planes, 6, (-1, -2))
    assert (inside[:, 1:4, 2:6] == planes).all() and inside[:, 0].sum() == 0
    cropped = place(planes, 2, (1, 1))
    assert (cropped == planes[:, 1:3, 1:3]).all()


def test_detector_cards_must_fit_their_stage():
    with pytest.raises(DeepLiverError, match="does not fit stage"):
        ModelCard(
            name="x", version="1", stage="tumor", architecture="yolo", spacing_mm=(1, 1, 1),
            hu_window=(0, 1), labels={0: "background", 1: "tumor"}, in_channels=3,
        )  # fmt: skip
    common = dict(
        name="x", version="1", spacing_mm=(1, 1, 1), hu_window=(0, 1),
        labels={0: "background", 1: "tumor"}, in_channels=3,
    )  # fmt: skip
    with pytest.raises(DeepLiverError, match="lesion_score"):  # an operating point is a detector's
        ModelCard(stage="tumor", architecture="unet2d", lesion_score=0.5, **common)
    with pytest.raises(DeepLiverError, match="lesion_score"):
        ModelCard(stage="detection", architecture="yolo", lesion_score=1.5, **common)
    assert (
        ModelCard(stage="detection", architecture="yolo", lesion_score=0.25, **common).lesion_score
        == 0.25
    )


def test_train_a_detector_then_segment_with_it(tmp_path, monkeypatch):
    run = tmp_path / "run"
    deepliver(
        "train", "--arch", "yolo", "--stage", "detection", "--data", "phantom:2",
        "--validation", "1", "--steps", "2", "--epochs", "1", "--phantom-size", "64", "64", "20",
        "--name", "tumor-yolo", "-o", run, "--progress", "none",
    )  # fmt: skip
    card = load_card(run / "model")
    assert card.architecture == "yolo" and "validation_ap50" in card.metrics
    assert "--arch yolo --stage detection" in card.training["command"]
    # The operating point was chosen on the one validation phantom, within the FP budget, in
    # the liver the bundled cascade finds there (as `segment --detector` runs it).
    assert 0.0 <= card.lesion_score <= 1.0
    assert card.metrics["validation_scans"] == 1
    cascade = [load_card(bundled_models_dir() / f"{s}-unet2d") for s in ("liver", "tumor")]
    assert card.metrics["validation_liver"] == " + ".join(f"{c.name} {c.version}" for c in cascade)
    assert card.metrics["validation_fp_per_scan"] <= 1.0

    # The operating point chosen again, on two validation phantoms, into a copy of the model.
    source_card = (run / "model" / "model.json").read_bytes()
    copy = tmp_path / "copy"
    deepliver(
        "models", "operating-point", run / "model", "-o", copy, "--validation", "2",
        "--model-version", "0.0.2", "--device", "cpu", "--progress", "none",
    )  # fmt: skip
    again = load_card(copy)
    assert (run / "model" / "model.json").read_bytes() == source_card  # left as it was
    assert (copy / "weights.pt").read_bytes() == (run / "model" / "weights.pt").read_bytes()
    assert (again.version, again.sha256, again.metrics["validation_scans"]) == (
        "0.0.2",
        card.sha256,
        2,
    )
    assert again.training["operating_point_command"].endswith("--model-version 0.0.2")
    network, _ = load_model(copy)
    liver_of, _ = liver_finder("cpu")
    scans = []
    for seed in (100, 101):  # the first two validation seeds, at the size it trained on
        phantom = make_phantom(phantom_spec(seed, "detection", (64, 64, 20)))
        scans.append(scan_case(phantom.ct, phantom.labels, liver_of(phantom.ct), network, card))
    assert again.lesion_score == choose_operating_point(scans).lesion_score
    taken = deepliver("models", "operating-point", run / "model", "-o", copy, expect=1)
    assert f"{copy} exists and is not empty" in taken.stderr
    liver_model = bundled_models_dir() / "liver-unet2d"
    refused = deepliver("models", "operating-point", liver_model, "-o", tmp_path / "x", expect=1)
    assert "is a liver model: only a detector has an operating point" in refused.stderr
    assert not (tmp_path / "x").exists()
    # Trained on a dataset folder: another validation count would move training cases into it.
    on_dataset = tmp_path / "on-dataset"
    shutil.copytree(run / "model", on_dataset)
    (tmp_path / "dataset").mkdir()
    write_card(
        on_dataset, card.with_updates(training={**card.training, "data": str(tmp_path / "dataset")})
    )
    split = deepliver(
        "models", "operating-point", on_dataset, "-o", tmp_path / "y", "--validation", "2", expect=1
    )  # fmt: skip
    assert "with 1 validation case(s); another count would split it differently" in split.stderr

    models = tmp_path / "models"
    shutil.copytree(bundled_models_dir(), models)
    if (models / "tumor-yolo").exists():
        shutil.rmtree(models / "tumor-yolo")
    shutil.copytree(run / "model", models / "tumor-yolo")
    monkeypatch.setenv("DEEPLIVER_MODELS", str(models))
    deepliver("phantom", tmp_path / "p", "--size", "64", "64", "24", "--seed", "2")
    out = tmp_path / "out"
    deepliver("segment", tmp_path / "p" / "ct.nii.gz", "-o", out, "--detector", "yolo")
    found = json.loads((out / "detections.json").read_text())
    assert found["detector"]["name"] == "tumor-yolo"
    assert all(lesion["score"] >= card.lesion_score for lesion in found["lesions"])
    header = (out / "detections.csv").read_text().splitlines()[0]
    assert header.startswith("lesion,score,slices")
    assert len((out / "detections.csv").read_text().splitlines()) == 1 + len(found["lesions"])

    # compare sets the detector beside the cascade: box metrics, and its box-derived mask.
    report = tmp_path / "report"
    deepliver(
        "compare",
        "--models",
        "unet2d,yolo",
        "--data",
        "phantom:1",
        "--size",
        "64",
        "64",
        "24",
        "-o",
        report,
    )  # fmt: skip  (--device auto: resolved before loading)
    box_rows = list(csv.DictReader((report / "boxes.csv").read_text().splitlines()))
    assert [(r["model"], r["level"]) for r in box_rows] == [("yolo", "slice"), ("yolo", "lesion")]
    metrics = list(csv.DictReader((report / "metrics.csv").read_text().splitlines()))
    assert {r["model"] for r in metrics} == {"unet2d", "yolo (box mask)"}
    assert "## Box detection" in (report / "summary.md").read_text()

    deepliver("train", "--arch", "yolo", "--stage", "liver", "--data", "phantom:1", "-o",
              tmp_path / "bad", expect=1)  # fmt: skip


def test_box_scores_per_slice_and_per_lesion_by_hand():
    from deepliver.detection.detect import DetectedLesion
    from deepliver.evaluation.boxes import box_mask, box_rows
    from deepliver.volume import Grid, Volume

    grid = Grid((10, 20, 20), origin=(0.0, 0.0, 0.0), spacing=(1.0, 1.0, 2.0))
    labels = np.zeros(grid.shape, dtype=np.uint8)
    labels[:, 2:18, 2:18] = 1
    labels[3:6, 5:9, 5:9] = 2  # one lesion: slices 3-5, rows and columns 5-8
    truth, ct = Volume(labels, grid), Volume(np.zeros(grid.shape, np.int16), grid)
    # Voxel centres at index * spacing: the lesion's corners are at (4.5, 4.5, 5.0)-(8.5, 8.5, 11).
    exact = DetectedLesion(1, 0.9, 3, (4.5, 4.5, 5.0), (8.5, 8.5, 11.0))
    rows = {r["level"]: r for r in box_rows("d", "c", [exact], truth, ct)}
    assert (rows["slice"]["tp"], rows["slice"]["fp"], rows["slice"]["fn"]) == (3, 0, 0)
    assert (rows["lesion"]["tp"], rows["lesion"]["fp"], rows["lesion"]["fn"]) == (1, 0, 0)
    assert (box_mask([exact], grid, labels > 0) == (labels == 2)).all()
    # Stored as sagittal slices, the slices scored are still the 3 axial ones.
    sagittal = (stored_as(v, (2, 0, 1), (False, False, False)) for v in (truth, ct))
    rows = {r["level"]: r for r in box_rows("d", "c", [exact], *sagittal)}
    assert (rows["slice"]["tp"], rows["slice"]["fp"], rows["slice"]["fn"]) == (3, 0, 0)
    # Shifted by half its width in x: IoU 1/3 per slice and in 3D -> misses, and a false box.
    shifted = DetectedLesion(1, 0.9, 3, (6.5, 4.5, 5.0), (10.5, 8.5, 11.0))
    rows = {r["level"]: r for r in box_rows("d", "c", [shifted], truth, ct)}
    assert (rows["slice"]["tp"], rows["slice"]["fp"], rows["slice"]["fn"]) == (0, 3, 3)
    assert (rows["lesion"]["tp"], rows["lesion"]["fp"], rows["lesion"]["fn"]) == (0, 1, 1)


def cube(low, side):
    return [low, low, low, low + side, low + side, low + side]


def test_operating_point_is_the_lowest_score_within_the_false_positive_budget():
    big, small, other = cube(0, 10), cube(50, 5), cube(0, 20)
    far = [cube(100 + 20 * n, 5) for n in range(3)]  # matches nothing
    scan_a = ScoredScan(  # a counted lesion (0.9), two misses (0.8, 0.4), a small lesion (0.3)
        boxes=np.array([big, far[0], far[1], small], float),
        scores=np.array([0.9, 0.8, 0.4, 0.3]),
        truth=np.array([big, small], float),
        diameters_mm=np.array([10.0, 5.0]),
    )
    scan_b = ScoredScan(  # a counted lesion at 0.5 and a miss at 0.6
        boxes=np.array([other, far[2]], float),
        scores=np.array([0.5, 0.6]),
        truth=np.array([other], float),
        diameters_mm=np.array([20.0]),
    )
    assert scan_a.counted.tolist() == [True, False]  # 10 mm counts, 5 mm does not
    found, false_positives = scan_a.matched(0.3)
    assert found.tolist() == [True, True] and false_positives == 2
    found, false_positives = scan_a.matched(0.4)
    assert found.tolist() == [True, False] and false_positives == 2
    # One per scan: 2 allowed. At 0.3 and 0.4 three misses stay; at 0.5 two.
    point = choose_operating_point([scan_a, scan_b], 1.0)
    assert (point.lesion_score, point.recall, point.fp_per_scan) == (0.5, 1.0, 1.0)
    assert (point.lesions, point.scans) == (2, 2)
    # Half a miss per scan: 1 allowed, first reached at 0.8; scan B's lesion (0.5) is lost.
    point = choose_operating_point([scan_a, scan_b], 0.5)
    assert (point.lesion_score, point.recall, point.fp_per_scan) == (0.8, 0.5, 0.5)
    point = choose_operating_point([scan_a, scan_b], 0.0)
    assert (point.lesion_score, point.recall, point.fp_per_scan) == (0.9, 0.5, 0.0)
    # Nothing fits: the point sits above every score and nothing is reported.
    lonely = ScoredScan(np.array([far[0]], float), np.array([0.7]), np.zeros((0, 6)), np.zeros(0))
    point = choose_operating_point([lonely], 0.0)
    assert point.lesion_score > 0.7 and point.fp_per_scan == 0.0 and np.isnan(point.recall)
