"""Model folders: ``model.json`` (the card) beside ``weights.pt`` (a plain state dict).

A model is data (see the architecture doc): the card says how the network is built, what
spacing and HU window it expects, what its labels mean, how the weights were made and how well
they did; the weights' sha256 is checked before they are loaded, and they are loaded with
``weights_only=True``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepliver.errors import DeepLiverError
from deepliver.io.atomic import write_atomically
from deepliver.io.checksum import file_sha256

CARD_FILE = "model.json"
WEIGHTS_FILE = "weights.pt"
CARD_FORMAT = 1
STAGES = ("liver", "liver-fine", "tumor", "detection")
SEGMENTATION_ARCHITECTURES = ("unet2d", "unet3d")
DETECTION_ARCHITECTURES = ("fasterrcnn", "yolo")
ARCHITECTURES = SEGMENTATION_ARCHITECTURES + DETECTION_ARCHITECTURES
MODELS_ENV = "DEEPLIVER_MODELS"


@dataclass(frozen=True)
class ModelCard:
    """What a model folder's ``model.json`` holds. Triples are (x, y, z), like spacing."""

    name: str
    version: str
    # "liver" (whole volume), "liver-fine" (the liver's edge in its box), "tumor"
    # (segmentation), "detection" (tumor boxes per slice)
    stage: str
    # "unet2d" (2.5D: adjacent axial slices as channels) | "unet3d" | "fasterrcnn" | "yolo"
    # (detectors: 2.5D slices too; channels are the backbone's stage widths)
    architecture: str
    spacing_mm: tuple[float, float, float]  # the grid the network sees
    hu_window: tuple[float, float]  # HU clipped to (low, high), then scaled to [0, 1]
    labels: dict[int, str]  # output channel -> name; 0 is background
    channels: tuple[int, ...] = (16, 32, 64, 128)
    strides: tuple[int, ...] = (2, 2, 2)
    num_res_units: int = 1
    in_channels: int = 1  # unet2d: the number of adjacent slices (odd); unet3d: 1
    roi_size: tuple[int, int, int] = (128, 128, 1)  # patch (x, y, z) voxels for the inferer
    training: dict[str, Any] = field(default_factory=dict)  # data, seeds, command, wall time
    metrics: dict[str, Any] = field(default_factory=dict)  # measured, e.g. validation Dice
    # detectors: 3D lesions are reported from this score (chosen on validation cases, see
    # detection.operating_point); None: detect.LESION_SCORE
    lesion_score: float | None = None
    sha256: str = ""  # of weights.pt
    description: str = ""
    format: int = CARD_FORMAT

    def __post_init__(self) -> None:
        self.validate()

    @property
    def out_channels(self) -> int:
        return len(self.labels)

    @property
    def spatial_dims(self) -> int:
        return 3 if self.architecture == "unet3d" else 2

    @property
    def is_detector(self) -> bool:
        return self.architecture in DETECTION_ARCHITECTURES

    @property
    def validation_metric(self) -> str:
        """The score training selects on: per-slice box AP for detectors, Dice otherwise."""
        return "validation_ap50" if self.is_detector else "validation_dice"

    @property
    def context_slices(self) -> int:
        """Slices on each side of the one seen (2D networks); 0 for unet3d."""
        return (self.in_channels - 1) // 2 if self.spatial_dims == 2 else 0

    def validate(self) -> None:
        """Raise DeepLiverError naming the first field that is wrong."""

        def bad(what: str) -> DeepLiverError:
            return DeepLiverError(f"model card {self.name!r}: {what}")

        if not isinstance(self.name, str) or not self.name.strip():
            raise DeepLiverError("model card: name must be a non-empty string")
        if not isinstance(self.version, str) or not self.version:
            raise bad("version must be a non-empty string")
        if self.stage not in STAGES:
            raise bad(f"stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        if self.architecture not in ARCHITECTURES:
            raise bad(
                f"architecture must be one of {', '.join(ARCHITECTURES)}, got {self.architecture!r}"
            )
        if (self.stage == "detection") != self.is_detector:
            raise bad(f"architecture {self.architecture} does not fit stage {self.stage}")
        if len(self.spacing_mm) != 3 or not all(_positive(v) for v in self.spacing_mm):
            raise bad(f"spacing_mm must be 3 positive numbers, got {self.spacing_mm!r}")
        if len(self.hu_window) != 2 or not self.hu_window[0] < self.hu_window[1]:
            raise bad(f"hu_window must be (low, high) with low < high, got {self.hu_window!r}")
        if sorted(self.labels) != list(range(len(self.labels))) or len(self.labels) < 2:
            raise bad(f"labels must number 0..n-1 with n >= 2, got {self.labels!r}")
        if not self.channels or len(self.strides) != len(self.channels) - 1:
            raise bad("strides must have one entry fewer than channels")
        if not all(_positive(v) for v in (*self.channels, *self.strides)):
            raise bad("channels and strides must be positive integers")
        if self.num_res_units < 0:
            raise bad("num_res_units must be >= 0")
        if self.spatial_dims == 2 and (self.in_channels < 1 or self.in_channels % 2 == 0):
            raise bad(
                f"{self.architecture} in_channels (slices) must be odd, got {self.in_channels}"
            )
        if self.architecture == "unet3d" and self.in_channels != 1:
            raise bad(f"unet3d in_channels must be 1, got {self.in_channels}")
        if len(self.roi_size) != 3 or not all(_positive(v) for v in self.roi_size):
            raise bad(f"roi_size must be 3 positive integers, got {self.roi_size!r}")
        if self.lesion_score is not None and not (
            self.is_detector and 0.0 <= self.lesion_score <= 1.0
        ):
            raise bad(f"lesion_score must be within 0..1 on a detector, got {self.lesion_score!r}")
        if self.sha256 and (len(self.sha256) != 64 or not _is_hex(self.sha256)):
            raise bad("sha256 must be 64 hex digits")
        if self.format != CARD_FORMAT:
            raise bad(f"card format {self.format} is not supported (this DeepLiver reads 1)")

    # --- JSON ------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["labels"] = {str(k): v for k, v in self.labels.items()}
        for key in ("spacing_mm", "hu_window", "channels", "strides", "roi_size"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelCard:
        if not isinstance(data, dict):
            raise DeepLiverError("model card: expected a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DeepLiverError(f"model card: unknown fields {', '.join(unknown)}")
        missing = [
            f.name
            for f in dataclasses.fields(cls)
            if f.name not in data
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise DeepLiverError(f"model card: missing fields {', '.join(missing)}")
        values = dict(data)
        try:
            values["labels"] = {int(k): str(v) for k, v in data["labels"].items()}
            for key, kind in (
                ("spacing_mm", float),
                ("hu_window", float),
                ("channels", int),
                ("strides", int),
                ("roi_size", int),
            ):
                if key in values:
                    values[key] = tuple(kind(v) for v in values[key])
            for key in ("in_channels", "num_res_units", "format"):
                if key in values:
                    values[key] = int(values[key])
        except (AttributeError, TypeError, ValueError) as error:
            raise DeepLiverError(f"model card: {error}") from None
        return cls(**values)

    def with_updates(self, **changes: Any) -> ModelCard:
        return dataclasses.replace(self, **changes)


def _positive(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _is_hex(text: str) -> bool:
    try:
        int(text, 16)
    except ValueError:
        return False
    return True


# --- folders -------------------------------------------------------------------------------


def load_card(folder: Path | str) -> ModelCard:
    """The card in ``folder/model.json``; DeepLiverError naming the file when missing or bad."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DeepLiverError(f"model folder not found: {folder}")
    path = folder / CARD_FILE
    if not path.is_file():
        raise DeepLiverError(f"model folder {folder} has no {CARD_FILE}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise DeepLiverError(f"cannot read model card {path}: {error}") from None
    try:
        return ModelCard.from_json(data)
    except DeepLiverError as error:
        raise DeepLiverError(f"invalid model card {path}: {error}") from None


def save_model(folder: Path | str, card: ModelCard, state_dict: dict, half: bool = True):
    """Write ``weights.pt`` (float tensors as float16 when ``half``, except those float16
    cannot hold) and ``model.json`` with the weights' sha256; returns the card as written."""
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {key: _stored(value.detach().to("cpu"), half) for key, value in state_dict.items()}
    weights = write_atomically(folder / WEIGHTS_FILE, lambda path: torch.save(state, path))
    card = card.with_updates(sha256=file_sha256(weights))
    write_card(folder, card)
    return card


def write_card(folder: Path | str, card: ModelCard) -> Path:
    """``folder/model.json``, written whole or not at all."""
    text = json.dumps(card.to_json(), indent=2) + "\n"
    return write_atomically(
        Path(folder) / CARD_FILE, lambda path: path.write_text(text, encoding="utf-8")
    )


def _stored(value, half: bool):
    """float16 halves the files; but a value beyond its range (65504) would load as inf, as a
    batch-norm running variance after unnormalised feature-pyramid outputs does: such a tensor
    stays float32."""
    if not (half and value.is_floating_point()):
        return value
    halved = value.half()
    return halved if bool(halved.isfinite().all()) else value.float()


def verify_weights(folder: Path | str, card: ModelCard | None = None) -> ModelCard:
    """The card, after checking that weights.pt exists and matches its sha256."""
    folder = Path(folder)
    card = card or load_card(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise DeepLiverError(f"model {card.name!r}: weights file missing: {weights}")
    if not card.sha256:
        raise DeepLiverError(f"model card {folder / CARD_FILE} has no sha256 for {weights}")
    actual = file_sha256(weights)
    if actual != card.sha256:
        raise DeepLiverError(
            f"refusing to load {weights}: its sha256 {actual} does not match the card's "
            f"{card.sha256} ({folder / CARD_FILE})"
        )
    return card


def load_model(folder: Path | str, device="cpu"):
    """``(network, card)``: the network built from the card, weights checked and loaded, in
    eval mode on ``device``."""
    import torch

    from deepliver.models.networks import build_network

    folder = Path(folder)
    card = verify_weights(folder)
    weights = folder / WEIGHTS_FILE
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure is a bad file
        raise DeepLiverError(f"cannot load weights {weights}: {error}") from None
    network = build_network(card)
    try:
        reference = network.state_dict()
        state = {k: v.to(reference[k].dtype) if k in reference else v for k, v in state.items()}
        network.load_state_dict(state)
    except (RuntimeError, KeyError) as error:
        raise DeepLiverError(
            f"weights {weights} do not fit the network its card describes: {error}"
        ) from None
    network.to(torch.device(device)).eval()
    return network, card


def bundled_models_dir() -> Path:
    """``Resources/Models`` of the source checkout, or the folder named by $DEEPLIVER_MODELS."""
    override = os.environ.get(MODELS_ENV)
    if override:
        folder = Path(override)
        where = f"${MODELS_ENV}"
    else:
        folder = Path(__file__).resolve().parents[2] / "Resources" / "Models"
        where = "the DeepLiver source checkout"
    if not folder.is_dir():
        raise DeepLiverError(
            f"model folder not found: {folder} (from {where}; set ${MODELS_ENV} to the folder "
            "that holds the model folders)"
        )
    return folder


def list_models(root: Path | str | None = None) -> list[ModelCard]:
    """The cards of every model folder under ``root``; by default the whole registry: the
    bundled models, then the user's (``deepliver.models.registry``)."""
    if root is None:
        from deepliver.models.registry import registered_cards

        return registered_cards()
    root = Path(root)
    return [
        load_card(folder)
        for folder in sorted(root.iterdir())
        if folder.is_dir() and (folder / CARD_FILE).is_file()
    ]


def find_model(name: str, root: Path | str | None = None) -> Path:
    """The folder of the model called ``name`` (folder name or card name): in ``root`` only
    when given, else in the registry (bundled first, then the user's highest version)."""
    if root is None:
        from deepliver.models.registry import find_registered

        return find_registered(name)
    root = Path(root)
    folder = root / name
    if (folder / CARD_FILE).is_file():
        return folder
    for card_path in sorted(root.glob(f"*/{CARD_FILE}")):
        if load_card(card_path.parent).name == name:
            return card_path.parent
    names = ", ".join(card.name for card in list_models(root)) or "none"
    raise DeepLiverError(f"model {name!r} not found in {root} (available: {names})")
