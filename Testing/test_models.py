"""Model cards, weights checks, MONAI networks, prediction on a CT grid, and `deepliver train`."""

import json

import numpy as np
import pytest
import torch
from cli_helpers import deepliver

from deepliver.errors import DeepLiverError
from deepliver.models.card import (
    CARD_FILE,
    WEIGHTS_FILE,
    ModelCard,
    bundled_models_dir,
    find_model,
    list_models,
    load_card,
    load_model,
    save_model,
    verify_weights,
)
from deepliver.models.networks import build_network
from deepliver.models.predict import dice, predict_mask, predict_probability
from deepliver.phantom import PhantomSpec, make_phantom
from deepliver.volume import Grid, Volume


def tiny_card(architecture="unet2d", **changes) -> ModelCard:
    values = dict(
        name=f"tiny-{architecture}",
        version="0.0.1",
        stage="liver",
        architecture=architecture,
        spacing_mm=(4.0, 4.0, 6.0),
        hu_window=(-250.0, 350.0),
        labels={0: "background", 1: "liver"},
        channels=(4, 8),
        strides=(2,),
        num_res_units=0,
        in_channels=3 if architecture == "unet2d" else 1,
        roi_size=(32, 32, 1) if architecture == "unet2d" else (16, 16, 8),
        training={"data": "none", "command": "tests"},
        metrics={"validation_dice": 0.0},
    )
    values.update(changes)
    return ModelCard(**values)


def tiny_model_folder(tmp_path, architecture="unet2d"):
    card = tiny_card(architecture)
    torch.manual_seed(0)
    folder = tmp_path / card.name
    return folder, save_model(folder, card, build_network(card).state_dict())


# --- cards ---------------------------------------------------------------------------------


def test_card_round_trip(tmp_path):
    folder, written = tiny_model_folder(tmp_path)
    loaded = load_card(folder)
    assert loaded == written
    assert loaded.labels == {0: "background", 1: "liver"}
    assert loaded.spacing_mm == (4.0, 4.0, 6.0)
    assert len(loaded.sha256) == 64
    assert ModelCard.from_json(json.loads(json.dumps(loaded.to_json()))) == loaded
    assert verify_weights(folder) == loaded


def test_weights_beyond_float16_stay_float32_and_load_back_exactly(tmp_path):
    card = tiny_card()
    state = build_network(card).state_dict()
    large, other = [k for k, v in state.items() if v.is_floating_point()][:2]
    # As a batch-norm running variance can be: float16 (max 65504) would store inf.
    state[large] = torch.full_like(state[large], 1.0e6)
    save_model(tmp_path / "m", card, state)
    stored = torch.load(tmp_path / "m" / WEIGHTS_FILE, weights_only=True)
    assert (stored[large].dtype, stored[other].dtype) == (torch.float32, torch.float16)
    loaded, _ = load_model(tmp_path / "m")
    assert torch.equal(loaded.state_dict()[large], state[large])


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"stage": "spleen"}, "stage"),
        ({"architecture": "vit"}, "architecture"),
        ({"spacing_mm": (1.0, 0.0, 1.0)}, "spacing_mm"),
        ({"hu_window": (300.0, -100.0)}, "hu_window"),
        ({"labels": {0: "background"}}, "labels"),
        ({"strides": (2, 2)}, "strides"),
        ({"in_channels": 2}, "odd"),
        ({"sha256": "xyz"}, "sha256"),
    ],
)
def test_invalid_cards_are_refused(changes, words):
    with pytest.raises(DeepLiverError, match=words):
        tiny_card(**changes)


def test_bad_card_files_name_the_file(tmp_path):
    folder, _ = tiny_model_folder(tmp_path)
    card_path = folder / CARD_FILE
    data = json.loads(card_path.read_text())
    del data["hu_window"]
    card_path.write_text(json.dumps(data))
    with pytest.raises(DeepLiverError, match="hu_window") as error:
        load_card(folder)
    assert str(card_path) in str(error.value)
    card_path.write_text("{not json")
    with pytest.raises(DeepLiverError) as error:
        load_card(folder)
    assert str(card_path) in str(error.value)
    card_path.unlink()
    with pytest.raises(DeepLiverError, match=CARD_FILE):
        load_card(folder)


def test_missing_folders_are_named(tmp_path, monkeypatch):
    missing = tmp_path / "no-such-model"
    with pytest.raises(DeepLiverError, match="not found") as error:
        load_model(missing)
    assert str(missing) in str(error.value)
    monkeypatch.setenv("DEEPLIVER_MODELS", str(missing))
    with pytest.raises(DeepLiverError, match="DEEPLIVER_MODELS") as error:
        bundled_models_dir()
    assert str(missing) in str(error.value)


def test_registry_lists_and_finds(tmp_path, monkeypatch):
    folder, card = tiny_model_folder(tmp_path)
    monkeypatch.setenv("DEEPLIVER_MODELS", str(tmp_path))
    assert bundled_models_dir() == tmp_path
    assert [c.name for c in list_models()] == [card.name]
    assert find_model(card.name) == folder
    with pytest.raises(DeepLiverError, match="tiny-unet2d"):
        find_model("nothing-like-it")


def test_weights_that_do_not_match_their_sha256_are_refused(tmp_path):
    folder, _ = tiny_model_folder(tmp_path)
    network, card = load_model(folder)
    assert not network.training
    weights = folder / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(DeepLiverError, match="sha256") as error:
        load_model(folder)
    assert str(weights) in str(error.value)
    weights.unlink()
    with pytest.raises(DeepLiverError, match="missing"):
        load_model(folder)


# --- networks and prediction ------------------------------------------------------------


@pytest.mark.parametrize("architecture", ["unet2d", "unet3d"])
def test_networks_give_one_channel_per_label(architecture):
    card = tiny_card(architecture)
    network = build_network(card).eval()
    shape = (2, 3, 32, 48) if architecture == "unet2d" else (1, 1, 8, 16, 24)
    with torch.inference_mode():
        out = network(torch.rand(shape))
    assert out.shape == (shape[0], 2, *shape[2:])


@pytest.mark.parametrize("architecture", ["unet2d", "unet3d"])
def test_predict_mask_lands_on_the_exact_input_grid(oblique_grid, architecture):
    torch.manual_seed(1)
    card = tiny_card(architecture)
    network = build_network(card).eval()
    rng = np.random.default_rng(0)
    ct = Volume(rng.integers(-1000, 400, oblique_grid.shape).astype(np.int16), oblique_grid)
    probability = predict_probability(network, card, ct)
    assert probability.array.dtype == np.float32
    assert np.allclose(probability.spacing, card.spacing_mm)
    assert probability.array.min() >= 0.0 and probability.array.max() <= 1.0
    mask = predict_mask(network, card, ct)
    assert mask.grid.same_as(ct.grid)
    assert mask.array.dtype == np.uint8 and set(np.unique(mask.array)) <= {0, 1}


class Everywhere(torch.nn.Module):
    """A network that calls every voxel foreground: where its answer lands is all that shows."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(image.shape[0], 2, *image.shape[2:])
        logits[:, 1] = 10.0
        return logits


@pytest.mark.parametrize("stage", ["liver", "tumor"])
def test_the_answer_reaches_every_input_voxel(stage):
    """35 slices of 1.25 mm span 43.75 mm, 7 model slices of 6 mm 42 mm: the last input slice
    lies beyond the model grid's last sample, and must get its answer all the same."""
    card = tiny_card(stage=stage)
    grid = Grid((35, 40, 40), (0.0, 0.0, 0.0), (1.0, 1.0, 1.25))
    ct = Volume(np.zeros(grid.shape, np.int16), grid)
    assert grid.with_spacing(card.spacing_mm).shape[0] == 7
    mask = predict_mask(Everywhere(), card, ct)
    assert mask.grid.same_as(grid)
    assert mask.array.all(), f"slices without an answer: {np.flatnonzero(~mask.array.all((1, 2)))}"


@pytest.mark.parametrize("architecture", ["unet2d", "unet3d"])
def test_tumor_models_see_the_crop_and_its_mirror_image(architecture):
    """Mirroring a tumor crop left to right mirrors the tumor answer exactly (it is the mean of
    the model on both); the liver stage runs once, so its random network is not symmetric."""
    rng = np.random.default_rng(3)
    hu = rng.integers(-100, 250, (10, 24, 40)).astype(np.int16)  # (z, y, x)
    liver_card = tiny_card(architecture)
    tumor_card = tiny_card(architecture, stage="tumor", labels={0: "background", 1: "tumor"})
    grid = Grid(hu.shape, (0.0, 0.0, 0.0), liver_card.spacing_mm)  # already the model grid
    answers = {}
    for card in (liver_card, tumor_card):
        torch.manual_seed(4)
        network = build_network(card).eval()
        plain = predict_probability(network, card, Volume(hu, grid)).array
        mirrored = predict_probability(network, card, Volume(hu[..., ::-1].copy(), grid)).array
        answers[card.stage] = (plain, mirrored[..., ::-1])
    plain, mirrored_back = answers["tumor"]
    assert plain.std() > 0
    np.testing.assert_allclose(mirrored_back, plain, rtol=0, atol=1e-6)
    plain, mirrored_back = answers["liver"]
    assert np.abs(mirrored_back - plain).max() > 1e-3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("architecture", ["unet2d", "unet3d"])
def test_prediction_on_a_gpu_matches_the_cpu(oblique_grid, architecture):
    """The sliding window sends its windows to the GPU and stitches on the host (a 3D model
    once failed here: its windows' weights stayed on the CPU)."""
    torch.manual_seed(1)
    card = tiny_card(architecture)
    network = build_network(card).eval()
    rng = np.random.default_rng(0)
    ct = Volume(rng.integers(-1000, 400, oblique_grid.shape).astype(np.int16), oblique_grid)
    on_cpu = predict_probability(network, card, ct).array
    on_gpu = predict_probability(network.to("cuda"), card, ct, "cuda").array
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=0, atol=1e-4)


def test_nan_and_constant_volumes_do_not_break_prediction(oblique_grid):
    card = tiny_card()
    network = build_network(card).eval()
    image = np.full(oblique_grid.shape, np.nan, dtype=np.float32)
    mask = predict_mask(network, card, Volume(image, oblique_grid))
    assert mask.grid.same_as(oblique_grid)


def test_bundled_liver_model_finds_the_liver_of_a_held_out_phantom():
    folder = find_model("liver-unet2d")
    network, card = load_model(folder)
    # Seed 7 is in the evaluation range (0-99) that training never uses; oblique, anisotropic.
    phantom = make_phantom(PhantomSpec(seed=7, size=(160, 160, 56), orientation="oblique"))
    mask = predict_mask(network, card, phantom.ct)
    assert mask.grid.same_as(phantom.ct.grid)
    assert dice(mask.array, phantom.labels.array > 0) >= LIVER_DICE_FLOOR


LIVER_DICE_FLOOR = 0.85


def test_bundled_models_are_small_and_verified():
    segmentation = 0
    for card in list_models():
        folder = find_model(card.name)
        verify_weights(folder)
        size = (folder / WEIGHTS_FILE).stat().st_size
        assert card.training.get("command", "").startswith("deepliver train")
        assert card.validation_metric in card.metrics
        if card.is_detector:
            assert size < 25 * 2**20  # each detector
            # reports from an operating point chosen on validation scans, within the budget
            assert card.lesion_score is not None
            assert card.metrics["validation_fp_per_scan"] <= 1.0
        else:
            segmentation += size
    assert 0 < segmentation < 30 * 2**20  # all segmentation weights together


# --- training --------------------------------------------------------------------------


def test_train_writes_a_model_and_resumes(tmp_path):
    run = tmp_path / "run"
    tiny = [
        "train", "--arch", "unet2d", "--stage", "liver", "--data", "phantom:3",
        "--validation", "1", "--steps", "2", "--batch", "2", "--phantom-size", "48", "48", "16",
        "--channels", "4", "8", "--patch", "32", "32", "1", "--spacing", "4", "4", "5.5",
        "-o", run, "--progress", "none",
    ]  # fmt: skip
    deepliver(*tiny, "--epochs", "1")
    card = verify_weights(run / "model")
    assert card.metrics["best_epoch"] == 1 and len(card.metrics["history"]) == 1
    assert "--data phantom:3" in card.training["command"]
    assert "--spacing 4 4 5.5" in card.training["command"] and card.spacing_mm == (4, 4, 5.5)
    load_model(run / "model")
    cached = sorted(p.name for p in (run / "cache" / "train").glob("*.npy"))
    assert cached == [f"0100{i}.{kind}.npy" for i in range(3) for kind in ("image", "target")]
    first = (run / "log.jsonl").read_text().splitlines()

    # Starting again over a run is refused; --resume continues with nothing lost.
    deepliver(*tiny, "--epochs", "2", expect=1)
    deepliver(*tiny, "--epochs", "2", "--resume")
    lines = (run / "log.jsonl").read_text().splitlines()
    assert lines[:1] == first and [json.loads(line)["epoch"] for line in lines] == [1, 2]
    card = verify_weights(run / "model")
    assert [h["epoch"] for h in card.metrics["history"]] == [1, 2]
    assert card.training["epochs"] == 2
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=True)
    assert checkpoint["epoch"] == 2

    # Resuming with other settings is refused.
    changed = [a if a != "phantom:3" else "phantom:4" for a in tiny]
    result = deepliver(*changed, "--epochs", "3", "--resume", expect=1)
    assert "data" in result.stderr

    # A grid of no size is refused, naming the option.
    swap = {"5.5": "0", run: tmp_path / "flat"}
    flat = [swap.get(a, a) for a in tiny]
    result = deepliver(*flat, "--epochs", "1", expect=1)
    assert "--spacing" in result.stderr and "positive" in result.stderr
