"""The training loop for every architecture: a task gives the batch loss (U-Nets: Dice +
cross-entropy on patches; detectors: their own losses on slices) and the validation score; the
loop runs Adam with a cosine schedule, mixed precision on a GPU, data-parallel under torchrun
(:mod:`deepliver.training.distributed`), a checkpoint per epoch (written atomically, so a kill
leaves the previous one intact), resume, a JSON-lines log, and the model folder at the end."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from monai.losses import DiceCELoss

from deepliver.errors import DeepLiverError
from deepliver.io.atomic import remove_leftovers, write_atomically
from deepliver.models.card import ModelCard, save_model
from deepliver.models.networks import build_network, count_parameters
from deepliver.models.predict import dice, foreground_probability
from deepliver.progress import Reporter, SilentReporter, within
from deepliver.training import data, distributed
from deepliver.training.patches import as_numbers, augment, darker_band, sample_batch
from deepliver.training.prefetch import AHEAD, prefetched

CHECKPOINT = "checkpoint.pt"
LOG = "log.jsonl"
MODEL_FOLDER = "model"

# Per stage and architecture: spacing (x, y, z) mm, HU window, patch (x, y, z), channels.
PRESETS = {
    ("liver", "unet2d"): dict(
        spacing=(3.0, 3.0, 5.0),
        window=(-250.0, 350.0),
        patch=(128, 128, 1),
        channels=(16, 32, 64, 128),
        slices=3,
        batch=16,
    ),
    ("tumor", "unet2d"): dict(
        spacing=(1.0, 1.0, 2.5),
        window=(-100.0, 250.0),
        patch=(128, 128, 1),
        channels=(16, 32, 64, 128),
        slices=3,
        batch=16,
    ),
    ("liver", "unet3d"): dict(
        spacing=(3.0, 3.0, 5.0),
        window=(-250.0, 350.0),
        patch=(96, 96, 32),
        channels=(8, 16, 32, 64),
        slices=1,
        batch=2,
    ),
    ("tumor", "unet3d"): dict(
        spacing=(1.5, 1.5, 2.5),
        window=(-100.0, 250.0),
        patch=(64, 64, 32),
        channels=(8, 16, 32, 64),
        slices=1,
        batch=2,
    ),
}
# The liver's edge in its box: the tumor stage's 2.5D network and window, on a 1.5 mm grid.
PRESETS[("liver-fine", "unet2d")] = dict(PRESETS[("tumor", "unet2d")], spacing=(1.5, 1.5, 2.5))
for _arch in ("fasterrcnn", "yolo"):
    PRESETS[("detection", _arch)] = dict(
        spacing=(1.5, 1.5, 2.5),
        window=(-100.0, 250.0),
        patch=(256, 256, 1),  # the canvas: 384 mm at 1.5 mm holds any liver crop
        channels=(16, 32, 64, 128),  # backbone stage widths
        slices=3,
        batch=8,
    )
FOREGROUND_FRACTION = {"liver": 0.6, "liver-fine": 0.5, "tumor": 0.7}


class SegmentationTask:
    """What the loop needs from a segmentation network: a batch loss and validation Dice."""

    def __init__(
        self, card: ModelCard, batch: int, foreground_fraction: float, device=None
    ) -> None:
        self.card, self.batch, self.fraction = card, batch, foreground_fraction
        self.metric = card.validation_metric
        self.device = torch.device(device or "cpu")
        # Batch Dice: one Dice over the batch, so patches without a tumor do not each count
        # as a perfect or a failed case.
        self.loss_function = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)

    def draw(self, cases, rng: np.random.Generator):
        """One batch of patches, on the CPU (beside a GPU, drawn a step ahead in a thread)."""
        return sample_batch(cases, self.card, self.batch, rng, self.fraction)

    def loss(self, network, batch, generator: torch.Generator):
        """Augmented on the device (``generator`` is the device's) and the loss."""
        image, target = as_numbers(*(tensor.to(self.device, non_blocking=True) for tensor in batch))
        if self.card.stage == "tumor":
            image = darker_band(image, generator)
        image, target = augment(image, target, generator)
        return self.loss_function(network(image), target)

    def validate(self, network, cases) -> tuple[float, list[float]]:
        dices = [validation_dice(network, self.card, case, self.device) for case in cases]
        return float(np.mean(dices)), dices

    def finish(self, network, items: list[data.Item]) -> dict:
        """Card fields measured on the final network (a segmentation model has none)."""
        return {}


def make_task(card: ModelCard, preset: dict, stage: str, device=None):
    if card.is_detector:
        from deepliver.detection.training import DetectionTask

        return DetectionTask(card, preset["batch"], device)
    return SegmentationTask(card, preset["batch"], FOREGROUND_FRACTION[stage], device)


@dataclass
class TrainConfig:
    arch: str
    stage: str
    data: str
    output: Path
    epochs: int = 10
    seed: int = 0
    steps: int = 100  # per epoch
    batch: int | None = None
    validation: int = 4  # phantoms
    lr: float = 1e-3
    phantom_size: tuple[int, int, int] | None = None  # fixed (x, y, z); None: varied
    channels: tuple[int, ...] | None = None
    patch: tuple[int, int, int] | None = None
    spacing: tuple[float, float, float] | None = None  # mm (x, y, z) the network sees
    slices: int | None = None  # 2.5D models: adjacent slices seen
    name: str | None = None
    version: str = "0.1.0"
    extra: dict = field(default_factory=dict)

    def resolved(self) -> dict:
        if (self.stage, self.arch) not in PRESETS:
            raise DeepLiverError(
                f"--arch {self.arch} does not fit --stage {self.stage} (detectors: --stage "
                "detection; U-Nets: --stage liver, liver-fine or tumor; liver-fine: unet2d)"
            )
        preset = dict(PRESETS[(self.stage, self.arch)])
        if self.batch:
            preset["batch"] = self.batch
        if self.channels:
            preset["channels"] = tuple(self.channels)
        if self.patch:
            preset["patch"] = tuple(self.patch)
        if self.spacing:
            if min(self.spacing) <= 0:  # the card checks the rest; this names the option
                raise DeepLiverError(
                    f"--spacing {self.spacing}: three positive sizes in mm (x, y, z)"
                )
            preset["spacing"] = tuple(self.spacing)
        if self.slices:
            if self.arch == "unet3d" or self.slices % 2 == 0:
                raise DeepLiverError(
                    f"--slices {self.slices}: 2.5D models see an odd number of slices "
                    "(unet3d sees the volume)"
                )
            preset["slices"] = self.slices
        return preset

    def command(self) -> str:
        """The full command line that reproduces this run."""
        parts = [
            "deepliver train",
            f"--arch {self.arch}",
            f"--stage {self.stage}",
            f"--data {self.data}",
            f"-o {self.output}",
            f"--epochs {self.epochs}",
            f"--seed {self.seed}",
            f"--steps {self.steps}",
            f"--validation {self.validation}",
            f"--lr {self.lr:g}",
        ]
        if self.batch:
            parts.append(f"--batch {self.batch}")
        if self.phantom_size:
            parts.append("--phantom-size " + " ".join(map(str, self.phantom_size)))
        if self.channels:
            parts.append("--channels " + " ".join(map(str, self.channels)))
        if self.patch:
            parts.append("--patch " + " ".join(map(str, self.patch)))
        if self.spacing:
            parts.append("--spacing " + " ".join(f"{v:g}" for v in self.spacing))
        if self.slices:
            parts.append(f"--slices {self.slices}")
        if self.name:
            parts.append(f"--name {self.name}")
        if self.version != "0.1.0":
            parts.append(f"--model-version {self.version}")
        return " ".join(parts)

    def identity(self) -> dict:
        """What must not change between a run and its resume (epochs may grow)."""
        keep = asdict(self)
        for key in ("epochs", "output", "extra"):
            keep.pop(key)
        keep["phantom_size"] = list(self.phantom_size) if self.phantom_size else None
        keep["channels"] = list(self.channels) if self.channels else None
        keep["patch"] = list(self.patch) if self.patch else None
        keep["spacing"] = list(self.spacing) if self.spacing else None
        return keep


def initial_card(config: TrainConfig) -> ModelCard:
    preset = config.resolved()
    depth = len(preset["channels"])
    target = "liver" if config.stage in data.LIVER_STAGES else "tumor"
    kind = "detection" if config.stage == "detection" else "segmentation"
    return ModelCard(
        name=config.name or f"{config.stage}-{config.arch}",
        version=config.version,
        stage=config.stage,
        architecture=config.arch,
        spacing_mm=tuple(preset["spacing"]),
        hu_window=tuple(preset["window"]),
        labels={0: "background", 1: target},
        channels=tuple(preset["channels"]),
        strides=(2,) * (depth - 1),
        num_res_units=1,
        in_channels=preset["slices"],
        roi_size=tuple(preset["patch"]),
        description=(
            f"{target} {kind}, {config.arch}"
            + (" (2.5D: adjacent slices as channels)" if config.arch != "unet3d" else "")
            + (", applied inside the liver box" if config.stage != "liver" else "")
        ),
    )


def train(
    config: TrainConfig, reporter: Reporter, resume: bool = False, device: str = "auto"
) -> Path | None:
    """Train (or resume) into ``config.output``; returns the model folder (None in the other
    processes of a ``torchrun`` job: process 0 writes everything)."""
    workers = distributed.start(device)
    try:
        return _train(config, reporter, resume, workers)
    finally:
        distributed.stop(workers)


def _train(config: TrainConfig, reporter: Reporter, resume: bool, workers) -> Path | None:
    if not workers.main:
        reporter = SilentReporter()  # process 0 reports
    run = Path(config.output)
    checkpoint_path = run / CHECKPOINT
    state = None
    if resume:
        if not checkpoint_path.is_file():
            raise DeepLiverError(f"--resume: no checkpoint in {run}")
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        saved = json.loads(state["config"])
        if saved != config.identity():
            changed = sorted(k for k in saved if saved.get(k) != config.identity().get(k))
            raise DeepLiverError(
                f"--resume: {run} was started with other settings ({', '.join(changed)})"
            )
    elif checkpoint_path.is_file():
        raise DeepLiverError(f"{run} already holds a run: add --resume, or use a new folder")
    if workers.main:
        remove_partial_files(run)
    distributed.wait(workers)  # every process has checked the folder before any writes to it
    run.mkdir(parents=True, exist_ok=True)

    card = initial_card(config)
    preset = config.resolved()
    source = data.parse_data(config.data)
    size = tuple(config.phantom_size) if config.phantom_size else None
    train_items, val_items = source.items(config.validation, config.seed, size, config.stage)
    reporter.stage("caching phantoms", 0.0)
    cache = run / "cache"
    if not workers.main:
        distributed.wait(workers)  # process 0 makes the cache; the others then map it
    train_cases = data.build_cache(
        cache / "train",
        train_items,
        config.stage,
        card.spacing_mm,
        card.hu_window,
        size,
        within(reporter.stage, 0.0, 0.08),
    )
    val_cases = data.build_cache(
        cache / "validation",
        val_items,
        config.stage,
        card.spacing_mm,
        card.hu_window,
        size,
        within(reporter.stage, 0.08, 0.1),
    )

    if workers.main:
        distributed.wait(workers)
    torch.manual_seed(config.seed)
    network = build_network(card).to(workers.device)
    optimizer = torch.optim.Adam(network.parameters(), lr=config.lr)
    task = make_task(card, preset, config.stage, workers.device)
    amp = workers.device.type == "cuda"  # mixed precision on GPU
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    history: list[dict] = []
    best = {"dice": -1.0, "epoch": 0, "state": None}
    start_epoch = 0
    elapsed = 0.0
    if state is not None:
        network.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history = json.loads(state["history"])
        best = {"dice": state["best_dice"], "epoch": state["best_epoch"], "state": state["best"]}
        start_epoch = int(state["epoch"])
        elapsed = float(state["elapsed"])
        if workers.main:  # a kill between the log line and the checkpoint left one line more
            lines = "".join(json.dumps(entry) + "\n" for entry in history)
            write_atomically(run / LOG, lambda path: path.write_text(lines, encoding="utf-8"))
        reporter.log(f"Resuming {run} after epoch {start_epoch}")
    reporter.log(
        f"Training {card.name} on {config.data}: {len(train_cases)} case(s), "
        f"{len(val_cases)} for validation, "
        f"{count_parameters(network):,} parameters, epochs {start_epoch + 1}..{config.epochs}"
        f" on {workers.device.type}"
        + (f", {workers.world} processes" if workers.distributed else "")
    )
    model = distributed.wrap(network, workers)
    ahead = AHEAD if workers.device.type == "cuda" else 0  # a drawing thread beside a GPU only

    for epoch in range(start_epoch + 1, config.epochs + 1):
        began = time.perf_counter()
        rng = np.random.default_rng([config.seed, epoch, workers.rank])
        generator = torch.Generator(workers.device).manual_seed(
            config.seed * 100003 + epoch + 7919 * workers.rank
        )
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config.lr, epoch, config.epochs)
        model.train()
        losses = []
        batches = prefetched(partial(task.draw, train_cases, rng), config.steps, ahead)
        for step, batch in enumerate(batches):
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(workers.device.type, enabled=amp):
                loss = task.loss(model, batch, generator)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            losses.append(float(loss.detach()))
            done = (epoch - 1 + (step + 1) / config.steps) / config.epochs
            reporter.stage(f"epoch {epoch}/{config.epochs}", 0.1 + 0.85 * done)
        mean_loss = distributed.mean(float(np.mean(losses)), workers)
        if not workers.main:
            distributed.wait(workers)  # process 0 validates and writes
            continue
        network.eval()
        score, per_case = task.validate(network, val_cases)
        seconds = time.perf_counter() - began
        elapsed += seconds
        entry = {
            "epoch": epoch,
            "loss": mean_loss,
            task.metric: score,
            f"{task.metric}_per_case": [round(d, 4) for d in per_case],
            "seconds": round(seconds, 1),
        }
        history.append(entry)
        if score > best["dice"]:
            best = {
                "dice": score,
                "epoch": epoch,
                "state": {k: v.detach().clone() for k, v in network.state_dict().items()},
            }
        with open(run / LOG, "a", encoding="utf-8") as log:
            log.write(json.dumps(entry) + "\n")
        save_checkpoint(checkpoint_path, network, optimizer, epoch, history, best, elapsed, config)
        reporter.log(
            f"epoch {epoch}: loss {entry['loss']:.4f}, {task.metric.replace('_', ' ')} "
            f"{score:.4f} ({seconds:.0f} s)"
        )
        distributed.wait(workers)

    if not workers.main:
        return None

    final = best["state"] if best["state"] is not None else network.state_dict()
    reporter.stage("measuring the final model on the validation cases", 0.96)
    network.load_state_dict(final)
    network.eval()
    finished = task.finish(network, val_items)
    reporter.stage("writing the model", 0.98)
    card = card.with_updates(
        **{k: v for k, v in finished.items() if k != "metrics"},
        training={
            "data": config.data,
            **source.describe(train_items, val_items),
            "phantom_size": list(size) if size else "varied per seed",
            "command": config.command().replace(
                "deepliver train",
                f"torchrun --nproc_per_node={workers.world} -m deepliver train"
                if workers.distributed
                else "deepliver train",
            ),
            "epochs": config.epochs,
            "steps_per_epoch": config.steps,
            "batch": preset["batch"],
            "seed": config.seed,
            "wall_seconds": round(elapsed),
            "device": workers.device.type,
            "processes": workers.world,
            "torch_threads": torch.get_num_threads(),
        },
        metrics={
            task.metric: round(best["dice"], 4),
            "validation_cases": len(val_cases),
            "best_epoch": best["epoch"],
            "history": [
                {
                    "epoch": h["epoch"],
                    "loss": round(h["loss"], 4),
                    task.metric: round(h[task.metric], 4),
                }
                for h in history
            ],
            **finished.get("metrics", {}),
        },
    )
    folder = run / MODEL_FOLDER
    save_model(folder, card, final)
    reporter.stage("done", 1.0)
    return folder


def remove_partial_files(run: Path) -> None:
    """Delete what a run killed mid-write left (a checkpoint, a cached case, the model), only in
    the folders a run writes: ``-o`` may name a folder that holds other things."""
    for folder in (run, *(run / "cache").glob("*"), run / MODEL_FOLDER):
        remove_leftovers(folder)


def learning_rate(base: float, epoch: int, epochs: int) -> float:
    """Cosine decay from ``base`` to 5% of it over the run (a function of the epoch alone, so a
    resumed run follows the same schedule)."""
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / max(1, epochs))))


def validation_dice(network, card: ModelCard, case: data.Case, device="cpu") -> float:
    image = np.asarray(case.image, dtype=np.float32) / np.float32(255.0)
    probability = foreground_probability(network, card, image, device)
    return dice(probability >= 0.5, np.asarray(case.target))


def save_checkpoint(path: Path, network, optimizer, epoch, history, best, elapsed, config):
    """Write to a temporary file, then rename: a kill mid-write leaves the last one intact."""
    state = {
        "model": network.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": epoch,
        "history": json.dumps(history),
        "best": best["state"],
        "best_dice": float(best["dice"]),
        "best_epoch": int(best["epoch"]),
        "elapsed": float(elapsed),
        "config": json.dumps(config.identity()),
    }
    write_atomically(path, lambda temporary: torch.save(state, temporary))
