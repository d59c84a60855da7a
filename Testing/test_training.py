"""Training that survives: a kill mid-epoch then --resume, a checkpoint write that fails
halfway, and two data-parallel processes on CPU (torchrun, gloo)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from cli_helpers import deepliver

from deepliver.models.card import verify_weights
from deepliver.training import loop

TINY = [
    "--arch", "unet2d", "--stage", "liver", "--data", "phantom:3", "--validation", "1",
    "--batch", "2", "--phantom-size", "48", "48", "16", "--channels", "4", "8",
    "--patch", "32", "32", "1", "--device", "cpu", "--progress", "none",
]  # fmt: skip


def epochs_logged(run) -> list[int]:
    log = run / "log.jsonl"
    if not log.is_file():
        return []
    return [json.loads(line)["epoch"] for line in log.read_text().splitlines() if line.strip()]


def test_killed_mid_epoch_then_resumed_loses_nothing(tmp_path):
    run = tmp_path / "run"
    args = [sys.executable, "-m", "deepliver", "train", *TINY, "--steps", "40", "--epochs", "4"]
    child = subprocess.Popen([*args, "-o", str(run)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while epochs_logged(run) != [1] and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.05)
    assert epochs_logged(run) == [1], "epoch 1 never finished"
    time.sleep(0.3)  # into epoch 2
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert epochs_logged(run)[0] == 1 and not (run / "model").exists()
    killed_at = torch.load(run / "checkpoint.pt", weights_only=True)["epoch"]
    # what a kill in the middle of write_atomically leaves (the kill above may have done so too)
    (run / ".checkpoint.pt.x1.partial").write_bytes(b"half a checkpoint")
    (run / "cache" / "train" / ".01000.image.npy.x2.partial.npy").write_bytes(b"half an array")
    (run / "notes").mkdir()
    (run / "notes" / ".draft.partial").write_text("not the run's")  # left alone

    result = deepliver("train", *TINY, "--steps", "40", "--epochs", "4", "-o", run, "--resume")
    assert f"after epoch {killed_at}" in result.stdout + result.stderr
    assert epochs_logged(run) == [1, 2, 3, 4]  # same folder, every epoch once
    card = verify_weights(run / "model")
    assert [h["epoch"] for h in card.metrics["history"]] == [1, 2, 3, 4]
    assert sorted(p.name for p in run.iterdir()) == [
        "cache", "checkpoint.pt", "log.jsonl", "model", "notes"
    ]  # fmt: skip
    assert [p.name for p in run.rglob("*.partial*")] == [".draft.partial"]  # the run's are gone


def test_a_checkpoint_write_that_fails_halfway_leaves_the_last_one(tmp_path, monkeypatch):
    network = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(network.parameters())
    config = loop.TrainConfig(arch="unet2d", stage="liver", data="phantom:1", output=tmp_path)
    path = tmp_path / loop.CHECKPOINT
    best = {"dice": 0.5, "epoch": 1, "state": None}
    loop.save_checkpoint(path, network, optimizer, 1, [], best, 1.0, config)
    before = path.read_bytes()

    real_save = torch.save

    def save_half_then_fail(state, target):
        real_save(state, target)
        with open(target, "r+b") as handle:  # a disk that fills up halfway through
            handle.truncate(os.path.getsize(target) // 2)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", save_half_then_fail)
    with pytest.raises(OSError):
        loop.save_checkpoint(path, network, optimizer, 2, [], best, 2.0, config)
    assert path.read_bytes() == before
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [loop.CHECKPOINT]


def test_two_data_parallel_processes_on_cpu(tmp_path):
    run = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "deepliver", "train", *TINY, "--steps", "10", "--epochs", "3", "--lr", "0.01",
        "-o", str(run),
    ]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment)
    assert result.returncode == 0, result.stdout + result.stderr
    assert epochs_logged(run) == [1, 2, 3]  # one log, written once per epoch
    assert sorted(p.name for p in run.glob("*.pt")) == ["checkpoint.pt"]
    card = verify_weights(run / "model")
    assert card.training["processes"] == 2
    assert card.training["command"].startswith("torchrun --nproc_per_node=2 -m deepliver train")
    losses = [h["loss"] for h in card.metrics["history"]]
    assert losses[-1] < losses[0]
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=True)
    assert checkpoint["epoch"] == 3
    assert not any(key.startswith("module.") for key in checkpoint["model"])


def msd_dataset(folder, cases: int = 3):
    """A small Decathlon-layout dataset (imagesTr/labelsTr) written from phantoms."""
    from deepliver.io.image_files import write_image
    from deepliver.phantom import PhantomSpec, make_phantom

    for number in range(cases):
        phantom = make_phantom(PhantomSpec(seed=500 + number, size=(48, 48, 16)))
        write_image(phantom.ct, folder / "imagesTr" / f"liver_{number}_0000.nii.gz")
        write_image(phantom.labels, folder / "labelsTr" / f"liver_{number}.nii.gz")
    return folder


def on_folder(data) -> list[str]:
    """TINY with --data the folder and no phantom size."""
    cut = TINY.index("--phantom-size")
    tiny = TINY[:cut] + TINY[cut + 4 :]
    tiny[tiny.index("--data") + 1] = str(data)
    return tiny


def test_train_from_a_decathlon_folder_splits_cases_for_validation(tmp_path):
    data = msd_dataset(tmp_path / "Task03_Liver")
    run = tmp_path / "run"
    deepliver("train", *on_folder(data), "--steps", "2", "--epochs", "1", "-o", run)
    card = verify_weights(run / "model")
    validation = card.training["validation_case_names"]
    assert len(validation) == 1 and card.training["train_cases"] == 2
    trained = sorted(p.name.split(".")[0] for p in (run / "cache" / "train").glob("*.image.npy"))
    assert sorted([*trained, *validation]) == ["liver_0", "liver_1", "liver_2"]


@pytest.mark.parametrize(
    "breakage, words",
    [
        ("label value", ["liver_1.nii.gz", "7"]),
        ("other grid", ["liver_1.nii.gz", "grid"]),
        ("missing label", ["liver_2_0000.nii.gz", "no label file"]),
        ("empty", ["no cases found"]),
    ],
)
def test_bad_datasets_are_refused_naming_the_case(tmp_path, breakage, words):
    from deepliver.io.image_files import read_image, write_image
    from deepliver.volume import Grid, Volume

    data = msd_dataset(tmp_path / "data")
    label = data / "labelsTr" / "liver_1.nii.gz"
    labels = read_image(label)
    if breakage == "label value":
        write_image(labels.with_array(labels.array * 7), label)
    elif breakage == "other grid":
        grid = labels.grid
        moved = Grid(grid.shape, grid.origin + 5.0, grid.spacing, grid.direction)
        write_image(Volume(labels.array, moved), label)
    elif breakage == "missing label":
        (data / "labelsTr" / "liver_2.nii.gz").unlink()
    else:
        for path in [*data.rglob("*.nii.gz")]:
            path.unlink()
    result = deepliver(
        "train", *on_folder(data), "--steps", "1", "--epochs", "1", "-o", tmp_path / "r", expect=1
    )
    for word in words:
        assert word in result.stderr


def test_training_never_reads_the_test_cases_of_a_dataset(tmp_path):
    from deepliver.io.image_files import write_image
    from deepliver.phantom import PhantomSpec, make_phantom
    from deepliver.training import data as training_data

    folder = msd_dataset(tmp_path / "data")
    phantom = make_phantom(PhantomSpec(seed=600, size=(48, 48, 16)))
    write_image(phantom.ct, folder / "imagesTs" / "liver_test_0000.nii.gz")
    write_image(phantom.labels, folder / "labelsTs" / "liver_test.nii.gz")
    train, validation = training_data.parse_data(str(folder)).items(1, 0)
    assert sorted(i.stem for i in train + validation) == ["liver_0", "liver_1", "liver_2"]


def test_tumor_patches_are_centred_on_a_small_lesion_as_often_as_on_a_large_one(tmp_path):
    """By voxel, a 30 mm lesion beside a 4 mm one would get 99.7% of the patches; the small
    lesions are the ones a tumor stage misses, so each lesion gets an equal share."""
    from deepliver.training import data as training_data
    from deepliver.volume import Grid, Volume

    grid = Grid((20, 60, 60), spacing=(1.0, 1.0, 2.5))
    labels = np.ones(grid.shape, np.uint8)  # liver everywhere
    labels[4:16, 10:40, 10:40] = 2  # 30 x 30 x 30 mm
    labels[9:11, 50:54, 50:54] = 2  # 4 x 4 x 5 mm
    ct = Volume(np.where(labels == 2, 60.0, 110.0).astype(np.float32), grid)
    item = training_data.Item(0, "case", lambda: (ct, Volume(labels, grid)))
    [case] = training_data.build_cache(tmp_path, [item], "tumor", (1.0, 1.0, 2.5), (-100, 250))
    z, y, x = case.foreground.T
    in_small = (x >= 45) & (y >= 45)
    assert np.all(case.target[z, y, x] == 1)
    assert abs(in_small.mean() - 0.5) < 0.01
    assert len(np.unique(case.foreground[in_small], axis=0)) == 4 * 4 * 2


def test_tumor_patches_see_the_liver_gate_moved_as_a_predicted_liver_moves_it(tmp_path):
    """The cascade blanks the CT beyond a *predicted* liver; training on the true gate alone
    taught the tumor stage that whatever the gate shows is liver, and the stomach or kidney a
    predicted liver takes in became tumor. Training patches show the gate moved: out to
    tissue 15 mm from the liver, in by up to 5 mm, never deeper; blanked tumor is not taught."""
    from deepliver.models.card import ModelCard
    from deepliver.training import data as training_data
    from deepliver.training import patches
    from deepliver.volume import Grid, Volume

    grid = Grid((12, 48, 100), spacing=(1.0, 1.0, 2.5))
    labels = np.zeros(grid.shape, np.uint8)
    labels[:, :, :50] = 1  # liver: x < 50 mm
    labels[3:9, 14:34, 40:50] = 2  # a tumor on the capsule, 10 mm deep
    ct = Volume(np.select([labels == 2, labels == 1], [20.0, 60.0], 100.0).astype(np.float32), grid)
    item = training_data.Item(0, "case", lambda: (ct, Volume(labels, grid)))
    [case] = training_data.build_cache(tmp_path, [item], "tumor", (1.0, 1.0, 2.5), (-100, 250))
    distance = case.liver_distance.astype(int) - training_data.DISTANCE_ZERO
    assert np.all(case.image[distance > 6] == 0)  # validation keeps the cascade's 5 mm gate
    card = ModelCard(
        name="t", version="0", stage="tumor", architecture="unet2d", spacing_mm=(1.0, 1.0, 2.5),
        hu_window=(-100.0, 250.0), labels={0: "background", 1: "tumor"}, in_channels=3,
        roi_size=(64, 48, 1),
    )  # fmt: skip
    start, size = np.array([6, 0, 10]), np.array([1, 48, 64])  # x 10..73 mm, slice 6
    middle = patches._window2d(case.liver_distance, [6], start[1:], size[1:], 255)[0]
    middle = middle.astype(int) - training_data.DISTANCE_ZERO
    tumor = patches._window2d(case.target, [6], start[1:], size[1:])[0] > 0
    rim = (middle < 0) & (middle >= -5)
    rng = np.random.default_rng(0)
    reach, rim_blanked, tumor_dropped = [], 0, 0
    for _ in range(200):
        image, target = patches._patch(case, card, start, size, rng)
        shown = image[1] > 0
        assert np.all(shown[middle < -5])  # the gate never cuts deeper than 5 mm into the liver
        assert not np.any(target[0] & ~shown)  # nothing blanked is taught as tumor
        reach.append(middle[shown].max())
        rim_blanked += int((rim & ~shown).any())
        tumor_dropped += int((tumor & ~shown).any())
    assert max(reach) <= 16 and min(reach) < 5 and np.percentile(reach, 75) > 9
    assert rim_blanked > 10 and tumor_dropped > 5


def test_the_fine_liver_stage_learns_the_whole_liver_in_its_box_unblanked():
    """The fine liver stage redraws the liver's edge, so it must see the tissue beyond it:
    the same box as the tumor stage, not blanked, with the liver (tumors included) as target."""
    from deepliver.training import data as training_data
    from deepliver.volume import Grid, Volume

    grid = Grid((12, 60, 100), spacing=(1.0, 1.0, 2.5))
    labels = np.zeros(grid.shape, np.uint8)
    labels[2:10, 20:40, 30:60] = 1
    labels[4:8, 25:35, 40:50] = 2
    ct = Volume(np.select([labels == 2, labels == 1], [20.0, 60.0], 100.0).astype(np.float32), grid)
    arrays = {
        stage: training_data.prepare_arrays(
            ct, Volume(labels, grid), stage, (1.0, 1.0, 2.5), (-100.0, 250.0)
        )
        for stage in ("liver-fine", "tumor")
    }
    fine, tumor = arrays["liver-fine"], arrays["tumor"]
    assert fine["image"].shape == tumor["image"].shape  # the liver's box
    assert fine["image"].size < labels.size
    assert np.array_equal(fine["image"], tumor["ungated"])  # nothing blanked
    assert (tumor["image"] == 0).any() and (fine["image"] > 0).all()
    assert fine["target"].sum() == (labels > 0).sum() > tumor["target"].sum() > 0
    assert set(fine) == {"image", "target"}


def test_batches_travel_as_bytes_and_become_numbers_on_the_device(tmp_path):
    """A drawn batch is uint8 (a quarter of float32 to copy to a GPU, an eighth of int64);
    ``as_numbers`` makes the image 0..1 and the target int64 with the same values."""
    from deepliver.models.card import ModelCard
    from deepliver.training import data as training_data
    from deepliver.training import patches
    from deepliver.volume import Grid, Volume

    grid = Grid((12, 48, 64), spacing=(1.0, 1.0, 2.5))
    labels = np.ones(grid.shape, np.uint8)
    labels[3:9, 14:34, 20:40] = 2
    ct = Volume(np.where(labels == 2, 20.0, 60.0).astype(np.float32), grid)
    item = training_data.Item(0, "case", lambda: (ct, Volume(labels, grid)))
    cases = training_data.build_cache(tmp_path, [item], "tumor", (1.0, 1.0, 2.5), (-100, 250))
    card = ModelCard(
        name="t", version="0", stage="tumor", architecture="unet3d", spacing_mm=(1.0, 1.0, 2.5),
        hu_window=(-100.0, 250.0), labels={0: "background", 1: "tumor"}, in_channels=1,
        roi_size=(32, 32, 8),
    )  # fmt: skip
    image, target = patches.sample_batch(cases, card, 4, np.random.default_rng(0), 1.0)
    assert image.dtype == target.dtype == torch.uint8
    assert image.shape == target.shape == (4, 1, 8, 32, 32) and target.max() == 1
    as_float, as_int = patches.as_numbers(image, target)
    assert as_float.dtype == torch.float32 and as_int.dtype == torch.int64
    assert torch.allclose(as_float * 255, image.float(), atol=1e-3)
    assert torch.equal(as_int, target.long())


@pytest.mark.parametrize("shape", [(400, 5, 128, 128), (200, 1, 8, 64, 64)])
def test_some_tumor_patches_get_a_darker_band_across_their_rows(shape):
    """About 3 in 10 patches (2.5D stacks and 3D patches) get a band of up to 40 HU of the tumor
    window (some only its edge), the same along each row and through the slices, with blanked
    (zero) voxels left at zero and nothing brighter; the others are untouched."""
    from deepliver.training import patches

    image = torch.rand(shape, generator=torch.Generator().manual_seed(1)) * 0.8 + 0.2
    image[..., :, :7] = 0.0  # blanked beyond the liver gate
    darker = image - patches.darker_band(image, torch.Generator().manual_seed(2))
    assert (darker >= 0).all() and (darker[..., :, :7] == 0).all()
    rows = darker[..., 7:].amax(dim=-1)  # per patch, slice and row
    assert torch.allclose(rows, darker[..., 7:].amin(dim=-1), atol=1e-6)
    through = rows.flatten(1, -2)  # (patch, slice, row)
    per_patch = through.amax(dim=(1, 2)) * 350  # HU at full strength
    assert (per_patch <= 40 + 1e-3).all()
    assert 0.2 < (per_patch > 0).float().mean() < 0.4 and (per_patch > 10).float().mean() > 0.15
    assert per_patch.max() > 35
    assert torch.allclose(through, through[:, :1].expand_as(through), atol=1e-6)


@pytest.mark.parametrize("shape", [(48, 64), (32, 96, 96), (1, 40, 40), (2, 7), (5, 1, 3)])
def test_the_moved_gate_is_the_knots_linearly_interpolated(shape):
    """The gate's field stretched one axis at a time is SciPy's order-1 zoom of its knots
    (the reference it replaced), to float32 rounding, knots on the first and last voxels."""
    from scipy import ndimage

    from deepliver.training import patches

    rng = np.random.default_rng(sum(shape))
    for _ in range(20):
        knots = [min(patches.GATE_KNOTS, n) for n in shape]
        field = rng.uniform(*patches.GATE_RANGE_MM, size=knots).astype(np.float32)
        zoom = [n / k for n, k in zip(shape, knots, strict=True)]
        expected = ndimage.zoom(field, zoom, order=1, grid_mode=False, mode="nearest")
        stretched = patches.stretched(field, shape)
        assert stretched.shape == shape and stretched.dtype == np.float32
        np.testing.assert_allclose(stretched, expected, rtol=0, atol=1e-5)
        ends = tuple(slice(None, None, max(1, n - 1)) for n in shape)
        knot_ends = tuple(slice(None, None, max(1, k - 1)) for k in knots)
        assert np.array_equal(stretched[ends], field[knot_ends])


@pytest.mark.parametrize(
    "arch, stage, extra",
    [
        ("unet2d", "tumor", ["--channels", "4", "8", "--patch", "32", "32", "1"]),
        ("unet2d", "liver-fine", ["--channels", "4", "8", "--patch", "32", "32", "1"]),
        ("unet3d", "liver", ["--channels", "4", "8", "--patch", "16", "16", "8"]),
        ("unet3d", "tumor", ["--channels", "4", "8", "--patch", "16", "16", "8"]),
        ("fasterrcnn", "detection", ["--channels", "4", "8", "8", "8", "--patch", "64", "64", "1"]),
        ("yolo", "detection", ["--channels", "4", "8", "8", "8", "--patch", "64", "64", "1"]),
    ],
)
def test_every_architecture_trains_into_a_model_that_loads(tmp_path, arch, stage, extra):
    from deepliver.models.card import load_model

    run = tmp_path / arch
    deepliver(
        "train", "--arch", arch, "--stage", stage, "--data", "phantom:2", "--validation", "1",
        "--batch", "2", "--phantom-size", "64", "64", "20", "--steps", "2", "--epochs", "1",
        "--device", "cpu", "--progress", "none", "-o", run, *extra,
    )  # fmt: skip
    network, card = load_model(run / "model")
    assert card.architecture == arch and card.stage == stage
    assert f"--arch {arch} --stage {stage}" in card.training["command"]
    assert len(card.metrics["history"]) == 1


def test_a_wider_slice_context_reaches_the_card_and_inference(tmp_path):
    from deepliver.models.card import load_model
    from deepliver.models.predict import predict_mask
    from deepliver.phantom import PhantomSpec, make_phantom

    run = tmp_path / "five"
    deepliver("train", *TINY, "--slices", "5", "--steps", "1", "--epochs", "1", "-o", run)
    network, card = load_model(run / "model")
    assert card.in_channels == 5 and card.context_slices == 2
    assert "--slices 5" in card.training["command"]
    phantom = make_phantom(PhantomSpec(seed=3, size=(48, 48, 16)))
    assert predict_mask(network, card, phantom.ct).shape == phantom.ct.shape
    for arch, slices in (("unet2d", "4"), ("unet3d", "3")):
        args = [*TINY, "--slices", slices, "-o", tmp_path / f"bad{arch}"]
        args[args.index("unet2d")] = arch
        result = deepliver("train", *args, expect=1)
        assert "--slices" in result.stderr and "odd" in result.stderr


def test_batches_drawn_ahead_in_a_thread_come_in_order_and_errors_at_their_batch():
    from deepliver.training.prefetch import prefetched

    rng, inline = np.random.default_rng(0), np.random.default_rng(0)
    drawn = list(prefetched(lambda: rng.integers(1000, size=3), 6, ahead=2))
    assert [d.tolist() for d in drawn] == [inline.integers(1000, size=3).tolist() for _ in range(6)]

    calls = []

    def failing():
        calls.append(len(calls))
        if len(calls) == 3:
            raise ValueError("broken case 3")
        return len(calls)

    received = []
    with pytest.raises(ValueError, match="broken case 3"):
        for batch in prefetched(failing, 10, ahead=2):
            received.append(batch)
    assert received == [1, 2] and len(calls) == 3  # nothing drawn after the error


def test_a_training_loop_that_stops_early_stops_the_drawing_thread():
    import threading

    from deepliver.training.prefetch import prefetched

    calls = []
    batches = prefetched(lambda: calls.append(1) or len(calls), 100, ahead=2)
    assert [next(batches), next(batches)] == [1, 2]
    batches.close()  # what leaving the for loop by an exception does
    assert not any(t.name == "deepliver-batches" for t in threading.enumerate())
    assert len(calls) <= 5  # two taken, at most two waiting, one being drawn
