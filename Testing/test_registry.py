"""The model registry: `deepliver models list|add|verify|remove` and how find_model searches it."""

import json

import pytest
import torch
from cli_helpers import deepliver

from deepliver.errors import DeepLiverError
from deepliver.models.card import (
    CARD_FILE,
    WEIGHTS_FILE,
    ModelCard,
    find_model,
    list_models,
    load_card,
    save_model,
)
from deepliver.models.networks import build_network
from deepliver.models.registry import add_model, version_key

BUNDLED_LIVER = load_card(find_model("liver-unet2d")).version


def tiny_card(version="0.0.1", **changes) -> ModelCard:
    values = dict(
        name="liver-tiny",
        version=version,
        stage="liver",
        architecture="unet2d",
        spacing_mm=(4.0, 4.0, 6.0),
        hu_window=(-250.0, 350.0),
        labels={0: "background", 1: "liver"},
        channels=(4, 8),
        strides=(2,),
        num_res_units=0,
        in_channels=3,
        roi_size=(32, 32, 1),
        training={"data": "none", "command": "tests"},
        metrics={"validation_dice": 0.5, "validation_cases": 2, "best_epoch": 1},
    )
    values.update(changes)
    return ModelCard(**values)


def model_folder(tmp_path, version="0.0.1", **changes):
    card = tiny_card(version, **changes)
    torch.manual_seed(0)
    folder = tmp_path / "made" / f"{card.name}-{version}"
    save_model(folder, card, build_network(card).state_dict())
    return folder


@pytest.fixture
def user(tmp_path, monkeypatch):
    folder = tmp_path / "user"
    monkeypatch.setenv("DEEPLIVER_USER_MODELS", str(folder))
    return folder


def listing() -> dict:
    return json.loads(deepliver("models", "list", "--json").stdout)


def by_name(data: dict) -> dict:
    return {(m["name"], m["version"]): m for m in data["models"]}


def test_add_then_list_and_find(tmp_path, user):
    source = model_folder(tmp_path)
    result = deepliver("models", "add", source)
    assert "liver-tiny 0.0.1" in result.stdout
    target = user / "liver-tiny-0.0.1"
    assert sorted(p.name for p in target.iterdir()) == [CARD_FILE, WEIGHTS_FILE]
    assert [p.name for p in user.iterdir()] == [target.name]  # no temporary left behind
    models = by_name(listing())
    tiny = models[("liver-tiny", "0.0.1")]
    assert tiny["where"] == "user" and tiny["path"] == str(target)
    assert tiny["weights_verified"] is True
    assert tiny["metrics"] == {"validation_dice": 0.5, "validation_cases": 2}
    assert tiny["stage"] == "liver" and tiny["architecture"] == "unet2d"
    assert models[("liver-unet2d", BUNDLED_LIVER)]["where"] == "bundled"
    assert find_model("liver-tiny") == target
    assert find_model("liver-tiny-0.0.1") == target
    assert find_model("liver-unet2d").parent.name == "Models"  # bundled still found first
    assert [c.name for c in list_models()][-1] == "liver-tiny"
    assert "liver-tiny" in deepliver("models", "list").stdout


def test_weights_that_do_not_match_the_card_are_refused(tmp_path, user):
    source = model_folder(tmp_path)
    with open(source / WEIGHTS_FILE, "ab") as weights:
        weights.write(b"changed")
    result = deepliver("models", "add", source, expect=1)
    assert str(source / WEIGHTS_FILE) in result.stderr and "sha256" in result.stderr
    assert not user.exists() or not any(user.iterdir())


def test_same_version_twice_is_refused_and_the_highest_version_wins(tmp_path, user):
    deepliver("models", "add", model_folder(tmp_path, "0.9.0"))
    again = deepliver("models", "add", model_folder(tmp_path / "again", "0.9.0"), expect=1)
    assert "already registered" in again.stderr
    assert str(user / "liver-tiny-0.9.0") in again.stderr
    assert str(tmp_path / "again") in again.stderr  # the folder it refused
    deepliver("models", "add", model_folder(tmp_path, "0.10.0"))
    assert find_model("liver-tiny") == user / "liver-tiny-0.10.0"
    assert find_model("liver-tiny-0.9.0") == user / "liver-tiny-0.9.0"
    bundled = deepliver(
        "models", "add", model_folder(tmp_path, BUNDLED_LIVER, name="liver-unet2d"), expect=1
    )
    assert "bundled" in bundled.stderr


def test_versions_sort_as_versions():
    assert version_key("0.10.0") > version_key("0.9.1")
    assert version_key("build 10") > version_key("build 9")  # not PEP 440: the numbers in it
    assert version_key("0.0.1") > version_key("build 9")


def test_weights_that_do_not_fit_the_card_are_refused(tmp_path, user):
    source = model_folder(tmp_path)
    card = json.loads((source / CARD_FILE).read_text())
    other = tiny_card(channels=(4, 16))  # same file, but the card now describes wider layers
    save_model(source, other, build_network(tiny_card()).state_dict())
    assert json.loads((source / CARD_FILE).read_text())["channels"] != card["channels"]
    result = deepliver("models", "add", source, expect=1)
    assert "do not fit" in result.stderr
    assert not user.exists() or not any(user.iterdir())


def test_verify_names_weights_changed_after_adding(tmp_path, user):
    add_model(model_folder(tmp_path))
    assert "ok" in deepliver("models", "verify", "liver-tiny").stdout
    weights = user / "liver-tiny-0.0.1" / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes() + b"x")
    result = deepliver("models", "verify", expect=1)
    assert "liver-tiny 0.0.1" in result.stderr and str(weights) in result.stdout
    assert f"liver-unet2d {BUNDLED_LIVER}" not in result.stderr  # the sound ones pass
    assert by_name(listing())[("liver-tiny", "0.0.1")]["weights_verified"] is False
    deepliver("models", "verify", "no-such-model", expect=1)


def test_remove(tmp_path, user):
    for version in ("0.1.0", "0.2.0"):
        add_model(model_folder(tmp_path, version))
    ambiguous = deepliver("models", "remove", "liver-tiny", expect=1)
    assert "--version" in ambiguous.stderr and "0.1.0" in ambiguous.stderr
    deepliver("models", "remove", "liver-tiny", "--version", "0.2.0")
    assert find_model("liver-tiny") == user / "liver-tiny-0.1.0"
    deepliver("models", "remove", "liver-tiny")
    assert not any(user.iterdir())
    with pytest.raises(DeepLiverError, match="liver-tiny"):
        find_model("liver-tiny")
    bundled = deepliver("models", "remove", "liver-unet2d", expect=1)
    assert "bundled" in bundled.stderr
    assert find_model("liver-unet2d").is_dir()
    deepliver("models", "remove", "liver-tiny", expect=1)


def test_a_broken_user_card_is_a_problem_not_an_error(tmp_path, user):
    add_model(model_folder(tmp_path))
    broken = user / "broken-1"
    broken.mkdir()
    (broken / CARD_FILE).write_text("{not json")
    data = listing()
    assert [p["path"] for p in data["problems"]] == [str(broken)]
    assert ("liver-tiny", "0.0.1") in by_name(data)
    assert "liver-tiny" in [c.name for c in list_models()]
    assert find_model("liver-tiny") == user / "liver-tiny-0.0.1"
    assert "could not be read" in deepliver("models", "list").stdout
    result = deepliver("models", "verify", expect=1)
    assert "broken-1" in result.stderr
    deepliver("models", "remove", "broken-1")
    assert not broken.exists()
