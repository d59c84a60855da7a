"""The Slicer-free parts of the Training module (DeepLiverSlicer/training.py): the argument
lists it gives `deepliver export`, `launch` and `models add` (parsed by the real CLI parser),
the stage of each architecture (accepted by the real training config), and a real training
log read into plot columns while it is being written."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from store_helpers import phantom_series

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepliver.annotation.store import AnnotationStore
from deepliver.cli import build_parser
from deepliver.errors import DeepLiverError
from deepliver.models.card import ARCHITECTURES
from deepliver.training import launch
from deepliver.training.loop import LOG, MODEL_FOLDER, TrainConfig
from DeepLiverSlicer import training

DATASET = Path("/data/liver dataset")  # a space: every path must stay one argument
RUN = Path("/data/liver dataset-runs/liver-unet2d-1")
CHOICES = [
    (arch, stage, preset)
    for arch in ARCHITECTURES
    for stage in training.stages_for(arch)
    for preset in training.PRESETS
]


def _split(args: list[str]) -> tuple[list[str], list[str]]:
    """What `deepliver.cli.main` does: the launch arguments, and the train ones after --."""
    cut = args.index("--")
    return args[:cut], args[cut + 1 :]


def _train_args(arch, stage, preset_name, extra=()):
    preset = training.PRESETS[preset_name]
    return training.train_args(arch, stage, DATASET, preset, 2, "my-model", extra)


@pytest.mark.parametrize("status", training.EXPORT_STATUSES)
def test_export_args_parse(status):
    args = training.export_args(Path("/s/store"), Path("/s/dicom"), DATASET, status)
    parsed = build_parser().parse_args(["export", *args])
    assert (parsed.store, parsed.dicom, parsed.out) == (Path("/s/store"), Path("/s/dicom"), DATASET)
    assert parsed.status == status and parsed.key_file is None
    keyed = training.export_args(Path("/s/store"), Path("/s/dicom"), DATASET, status, Path("/k"))
    assert build_parser().parse_args(["export", *keyed]).key_file == Path("/k")


def test_export_takes_finished_annotations_only():
    with pytest.raises(DeepLiverError, match="status"):
        training.export_args(Path("/s"), Path("/d"), DATASET, "any")


@pytest.mark.parametrize(("arch", "stage", "preset_name"), CHOICES)
def test_train_args_parse_and_fit_the_training_config(arch, stage, preset_name):
    preset = training.PRESETS[preset_name]
    args = _train_args(arch, stage, preset_name)
    parsed = build_parser().parse_args(["train", *args, "-o", str(RUN)])
    assert (parsed.arch, parsed.stage, parsed.data) == (arch, stage, str(DATASET))
    assert (parsed.epochs, parsed.steps, parsed.device) == (preset.epochs, preset.steps,
                                                            preset.device)  # fmt: skip
    assert (parsed.validation, parsed.name) == (2, "my-model")
    config = TrainConfig(arch=arch, stage=stage, data=str(DATASET), output=RUN)
    assert config.resolved()["patch"]  # the stage fits the architecture


@pytest.mark.parametrize(("arch", "stage", "preset_name"), CHOICES)
@pytest.mark.parametrize("template", ["", "ssh gpu1 {command}", "sbatch --wrap {command}"])
def test_launch_args_parse_locally_and_remotely(arch, stage, preset_name, template):
    train = _train_args(arch, stage, preset_name)
    launch_part, train_part = _split(training.launch_args(RUN, train, template))
    parsed = build_parser().parse_args(["launch", *launch_part])
    assert parsed.run_folder == RUN and not parsed.status
    assert parsed.remote == (template or None)
    assert train_part == train
    parsed_train = build_parser().parse_args(["train", *train_part, "-o", str(RUN)])
    assert parsed_train.arch == arch and parsed_train.output == RUN
    assert launch.train_command(train_part, RUN)[-4:-2] == ["-o", str(RUN)]  # no -o twice


def test_the_presets_differ_in_length_and_device():
    fast, full = training.PRESETS["fast CPU"], training.PRESETS["full GPU"]
    assert (fast.device, full.device) == ("cpu", "cuda")
    assert fast.epochs * fast.steps < full.epochs * full.steps


def test_stages_follow_the_architecture():
    assert training.stages_for("unet2d") == ("liver", "liver-fine", "tumor")
    assert training.stages_for("unet3d") == ("liver", "tumor")
    assert training.stages_for("fasterrcnn") == training.stages_for("yolo") == ("detection",)
    with pytest.raises(DeepLiverError, match="unknown architecture"):
        training.stages_for("resnet")
    with pytest.raises(DeepLiverError, match="does not train a detection"):
        _train_args("unet2d", "detection", "fast CPU")
    with pytest.raises(DeepLiverError):  # what the glue refuses, training refuses too
        TrainConfig(arch="yolo", stage="liver", data="x", output=RUN).resolved()


def test_remote_template_needs_its_command():
    with pytest.raises(DeepLiverError, match="command"):
        training.checked_template("ssh gpu1")
    with pytest.raises(DeepLiverError, match="command"):
        training.launch_args(RUN, ["--arch", "yolo"], "sbatch --wrap {run}")
    assert training.checked_template("  ssh gpu1 {command}\n") == "ssh gpu1 {command}"
    assert training.checked_template("   ") == ""  # blank: a local run
    assert "--remote" not in training.launch_args(RUN, ["--arch", "yolo"], "  ")


def test_models_add_args_parse():
    parsed = build_parser().parse_args(["models", *training.models_add_args(RUN)])
    assert parsed.action == "add" and parsed.folder == RUN / MODEL_FOLDER
    assert training.MODEL_FOLDER == MODEL_FOLDER


def test_validation_leaves_cases_to_train_on():
    fast, full = training.PRESETS["fast CPU"], training.PRESETS["full GPU"]
    assert training.validation_count(full, 3) == 2
    assert training.validation_count(full, 10) == full.validation
    assert training.validation_count(fast, 2) == 1
    with pytest.raises(DeepLiverError, match="1 case"):
        training.validation_count(fast, 1)


def test_run_folder_lies_beside_the_dataset():
    name = training.run_name("yolo", "detection", now=0.0)
    assert name.startswith("detection-yolo-19") or name.startswith("detection-yolo-20")
    folder = training.default_run_folder(DATASET, name)
    assert folder.name == name and DATASET not in folder.parents
    assert folder.parent.parent == DATASET.parent


# --- the training log -------------------------------------------------------------------------

TINY = [
    "--arch", "unet2d", "--stage", "liver", "--data", "phantom:1", "--validation", "1",
    "--batch", "2", "--phantom-size", "32", "32", "12", "--channels", "4", "8",
    "--patch", "32", "32", "1", "--steps", "1", "--epochs", "2", "--device", "cpu",
]  # fmt: skip


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A real (tiny) `deepliver train` run: its log.jsonl is the loop's own."""
    run = tmp_path_factory.mktemp("run") / "run"
    command = [sys.executable, "-m", "deepliver", "train", *TINY, "-o", str(run)]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    return run


def test_a_real_log_becomes_plot_columns(trained_run):
    columns = training.run_columns(trained_run)
    assert columns.metric == "validation_dice"
    assert columns.epochs == [1, 2]
    written = [json.loads(line) for line in (trained_run / LOG).read_text().splitlines()]
    assert columns.losses == [e["loss"] for e in written]
    assert columns.scores == [e["validation_dice"] for e in written]
    assert columns.rows() == list(zip([1, 2], columns.losses, columns.scores, strict=True))
    assert columns.names == ["epoch", "loss", "validation_dice"]
    assert training.has_model(trained_run) and not training.is_launched(trained_run)


def test_a_half_written_last_line_is_skipped(trained_run, tmp_path):
    text = (trained_run / LOG).read_text()
    first, second = text.splitlines()
    log = tmp_path / LOG
    log.write_text(first + "\n" + second[: len(second) // 2])  # epoch 2 being written
    assert training.log_columns(training.read_log(log)).epochs == [1]
    log.write_text(first + "\nwarning: not JSON\n" + second + "\n")  # finished, with noise
    assert training.log_columns(training.read_log(log)).epochs == [1, 2]
    log.write_text(first + "\n" + second)  # complete JSON but no newline yet: wait for it
    assert training.read_log(log) == training.read_log(trained_run / LOG)[:1]


def test_detector_logs_plot_their_ap(tmp_path):
    entry = {"epoch": 1, "loss": 2.5, "validation_ap50": 0.125,
             "validation_ap50_per_case": [0.1, 0.15], "seconds": 3.0}  # fmt: skip
    (tmp_path / LOG).write_text(json.dumps(entry) + "\n")
    columns = training.run_columns(tmp_path)
    assert (columns.metric, columns.rows()) == ("validation_ap50", [(1, 2.5, 0.125)])


def test_no_log_yet_gives_empty_columns(tmp_path):
    columns = training.run_columns(tmp_path)
    assert columns.epochs == [] and columns.rows() == [] and columns.names[-1] == "validation"


def test_status_line_of_a_run(trained_run):
    epochs = training.read_log(trained_run / LOG)
    progress = {"event": "progress", "stage": "epoch 2/2", "fraction": 0.5}
    line = training.status_line(launch.Status("running", epochs, progress, ""))
    assert line.startswith("running; epoch 2/2 (50%); epoch 2: loss ")
    assert training.still_going("running") and training.still_going("unknown")
    assert not training.still_going("finished") and not training.still_going("failed")
    done = launch.Status("finished", epochs, None, "model: /r/model")
    assert training.status_line(done).endswith("model: /r/model")


def test_series_summary_counts_what_export_takes(tmp_path):
    store = AnnotationStore(tmp_path / "store")
    for seed, status in ((41, "complete"), (42, "approved"), (43, "draft")):
        series = phantom_series(tmp_path / "dicom" / str(seed), seed)
        store.save(series.identity, series.grid, series.segmentation, reader="R", status=status)
    assert training.series_summary(tmp_path / "store", "complete") == "2 series to export"
    assert training.series_summary(tmp_path / "store", "approved") == "1 series to export"
    assert "Choose" in training.series_summary(tmp_path / "nowhere", "complete")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no series" in training.series_summary(empty, "approved")


def test_dataset_cases_counts_what_training_reads(tmp_path):
    assert training.dataset_cases(tmp_path) == 0
    subprocess.run(
        [sys.executable, "-m", "deepliver", "phantom", str(tmp_path / "case1"),
         "--size", "32", "32", "12", "--progress", "none"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    assert training.dataset_cases(tmp_path) == 1


def test_the_module_flow_without_slicer(tmp_path):
    """What the self-test does in Slicer, with the glue's argument lists and the real CLI:
    export three complete series, launch a tiny local run, plot it, register its model."""
    from cli_helpers import deepliver

    from deepliver.models.card import find_model

    store = AnnotationStore(tmp_path / "store")
    for seed in (51, 52, 53):
        series = phantom_series(tmp_path / "dicom" / str(seed), seed)
        store.save(series.identity, series.grid, series.segmentation, reader="R", status="complete")
    dataset = tmp_path / "dataset"
    key = tmp_path / "key"
    export = training.export_args(tmp_path / "store", tmp_path / "dicom", dataset, "complete", key)
    deepliver("export", *export, "--test-fraction", "0")
    cases = training.dataset_cases(dataset)
    assert cases == 3

    preset = training.PRESETS["fast CPU"]
    name = training.run_name("unet2d", "liver")
    run = training.default_run_folder(dataset, name)
    tiny = ("--epochs", "2", "--steps", "1", "--batch", "2", "--channels", "4", "8",
            "--patch", "32", "32", "1")  # fmt: skip
    train = training.train_args(
        "unet2d", "liver", dataset, preset, training.validation_count(preset, cases), name, tiny
    )
    deepliver("launch", *training.launch_args(run, train))
    assert training.is_launched(run)
    final = launch.wait(run, timeout_s=240)
    assert final.state == "finished", final.describe()
    columns = training.run_columns(run)
    assert columns.epochs == [1, 2] and columns.metric == "validation_dice"
    assert training.has_model(run)

    deepliver("models", *training.models_add_args(run))
    assert find_model(name).parent.parent != run  # copied into the user's models
    assert (find_model(name) / "model.json").is_file()
