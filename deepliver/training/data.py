"""Training cases, from generated phantoms or a dataset folder, preprocessed once and cached as
memory maps.

A dataset folder is read as :mod:`deepliver.datasets` reads it (the Medical Segmentation
Decathlon layout, as `deepliver export` writes it and as LiTS / MSD Task03 come, or case
folders); its cases are split by patient (the case name) into training and validation with the
seed. Phantoms use seed ranges kept apart:

Seed ranges (disjoint, so a model is never scored on what it was trained on):
- EVAL_SEEDS 0-99: held out for benchmarks and tests; never used by training.
- VALIDATION_SEEDS 100-199: validation during training (model selection).
- TRAIN_SEED_START 1000+: training phantoms 1000, 1001, ...

Each case is stored as uint8 ``.npy`` files (z, y, x) on the model grid: the image windowed
to 0..255 and the target (0/1), and for the tumor stage also the image before the liver gate and
each voxel's distance to the liver (see :class:`Case`), read back with ``mmap_mode="r"`` so
epochs never regenerate or resample a phantom.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from deepliver.annotation.segmentation import LESION_CONNECTIVITY
from deepliver.errors import DeepLiverError
from deepliver.inference.postprocess import liver_only
from deepliver.io.atomic import write_atomically
from deepliver.models.predict import normalise_uint8
from deepliver.phantom import PhantomSpec, make_phantom
from deepliver.progress import Progress
from deepliver.volume import Box

EVAL_SEEDS = range(0, 100)
VALIDATION_SEEDS = range(100, 200)
TRAIN_SEED_START = 1000
TUMOR_CROP_MARGIN_MM = 15.0
BOX_STAGES = ("liver-fine", "tumor", "detection")  # cached as the liver's box, not the volume
LIVER_STAGES = ("liver", "liver-fine")  # whose target is the liver (tumor included)
# 2: tumor cases blanked beyond the liver (postprocess.liver_only); 3: tumor cases also keep the
# image before that gate and the distance to the liver; 4: axes in patient order whatever the
# file's storage (Grid.patient_ordered; phantoms were already, a RAS dataset was mirrored)
CACHE_VERSION = 4
# Signed distance to the liver surface (mm, > 0 outside) stored as uint8: value - DISTANCE_ZERO.
DISTANCE_ZERO = 128


@dataclass(frozen=True)
class Item:
    """One case to cache: its number (seeds the foreground sample), file stem and loader."""

    seed: int
    stem: str
    load: object  # () -> (ct Volume in HU, labels Volume 0/1/2)


@dataclass(frozen=True)
class Source:
    """Where ``--data`` points: N phantoms or a dataset folder."""

    text: str
    phantoms: int = 0
    folder: Path | None = None

    def items(self, validation: int, seed: int, size=None, stage: str = "liver"):
        """(training items, validation items)."""
        if self.folder is None:
            train = [_phantom_item(s, stage, size) for s in train_seeds(self.phantoms)]
            return train, [_phantom_item(s, stage, size) for s in validation_seeds(validation)]
        from deepliver.datasets import cases_from

        cases = cases_from(str(self.folder), part="train")
        if validation >= len(cases):
            raise DeepLiverError(
                f"{self.folder}: {len(cases)} case(s) cannot give {validation} for validation "
                "and still leave some to train on"
            )
        order = np.random.default_rng(seed).permutation(len(cases))
        items = [Item(int(i), _stem(cases[i].name), cases[i].load) for i in order]
        return items[validation:], items[:validation]

    def describe(self, train: list[Item], validation: list[Item]) -> dict:
        """What the card says about the data."""
        if self.folder is None:
            return {
                "train_seeds": f"{TRAIN_SEED_START}-{TRAIN_SEED_START + self.phantoms - 1}",
                "validation_seeds": f"{VALIDATION_SEEDS.start}-"
                f"{VALIDATION_SEEDS.start + len(validation) - 1}",
                "eval_seeds_never_used": f"{EVAL_SEEDS.start}-{EVAL_SEEDS.stop - 1}",
            }
        return {
            "train_cases": len(train),
            "validation_case_names": sorted(item.stem for item in validation),
        }


@dataclass(frozen=True)
class Case:
    """One cached case. A tumor case also keeps what its liver gate hid: in the cascade the gate
    follows the predicted liver, which strays from the true one by millimetres to centimetres,
    so training moves the gate (:func:`deepliver.training.patches.moved_gate`)."""

    seed: int
    image: np.ndarray  # uint8 (z, y, x), window scaled to 0..255
    target: np.ndarray  # uint8 (z, y, x), 0/1
    foreground: np.ndarray  # (n, 3) int32 sample of target voxels (may be empty)
    ungated: np.ndarray | None = None  # tumor stage: the image before the liver gate
    liver_distance: np.ndarray | None = None  # tumor stage: uint8, mm + DISTANCE_ZERO


def parse_data(data: str) -> Source:
    """``phantom:N`` or a dataset folder."""
    kind, _, count = data.partition(":")
    if kind == "phantom" and count:
        if not count.isdigit() or int(count) < 1:
            raise DeepLiverError(f"--data {data!r}: expected phantom:N with N >= 1")
        return Source(data, phantoms=int(count))
    folder = Path(data)
    if not folder.is_dir():
        raise DeepLiverError(f"--data {data!r}: neither phantom:N nor a dataset folder")
    return Source(data, folder=folder)


def _phantom_item(seed: int, stage: str, size) -> Item:
    def load():
        phantom = make_phantom(phantom_spec(seed, stage, size))
        return phantom.ct, phantom.labels

    return Item(seed, f"{seed:05d}", load)


def _stem(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def train_seeds(count: int) -> list[int]:
    return list(range(TRAIN_SEED_START, TRAIN_SEED_START + count))


def validation_seeds(count: int) -> list[int]:
    if count > len(VALIDATION_SEEDS):
        raise DeepLiverError(f"at most {len(VALIDATION_SEEDS)} validation phantoms")
    return list(VALIDATION_SEEDS[:count])


def phantom_spec(seed: int, stage: str, size: tuple[int, int, int] | None = None) -> PhantomSpec:
    """A varied phantom for ``seed``: matrix size, slice count and orientation drawn from it
    (contrast phase, spacing, anatomy and tumors come from the phantom's own seed)."""
    rng = np.random.default_rng([seed, 7919])
    if size is None:
        sides = (160, 192, 224, 256) if stage == "liver" else (224, 256, 288, 320)
        side = int(rng.choice(sides))
        size = (side, side, int(rng.integers(40, 112)))
    orientation = "oblique" if rng.random() < 0.3 else "axial"
    return PhantomSpec(seed=seed, size=tuple(size), orientation=orientation)


def prepare_case(seed: int, stage: str, spacing, window, size=None) -> dict[str, np.ndarray]:
    """The arrays of one phantom on the model grid (see :func:`prepare_arrays`)."""
    phantom = make_phantom(phantom_spec(seed, stage, size))
    return prepare_arrays(phantom.ct, phantom.labels, stage, spacing, window)


def prepare_arrays(ct, labels, stage: str, spacing, window) -> dict[str, np.ndarray]:
    """uint8 arrays on the model grid: "image" and "target"; the whole volume for the liver
    stage, the liver's box for the fine liver stage, the liver's box blanked beyond the liver
    for the tumor stage and the detectors; the tumor stage also gets "ungated" (the box before
    blanking) and "liver_distance"."""
    ungated = ct
    if stage in BOX_STAGES:
        margin = TUMOR_CROP_MARGIN_MM / ct.spacing[::-1]
        box = Box.around(labels.array > 0, margin)
        if box is not None:
            ungated, labels = ct.crop(box), labels.crop(box)
        # The fine liver stage must see where the liver ends: it is not blanked.
        ct = ungated if stage == "liver-fine" else liver_only(ungated, labels.array > 0)
    image = ct.resampled_to_spacing(spacing)
    label = labels.resampled_onto(image.grid, label=True).array
    target = (label > 0) if stage in LIVER_STAGES else (label == 2)
    arrays = {"image": normalise_uint8(image.array, window), "target": target.astype(np.uint8)}
    if stage == "tumor":
        arrays["ungated"] = normalise_uint8(ungated.resampled_onto(image.grid).array, window)
        arrays["liver_distance"] = _liver_distance(label > 0, image.spacing)
    return arrays


def _liver_distance(liver: np.ndarray, spacing_xyz) -> np.ndarray:
    """Signed distance to the liver surface in whole mm (> 0 outside) + DISTANCE_ZERO, uint8."""
    if not liver.any():
        return np.full(liver.shape, 255, np.uint8)
    image = sitk.GetImageFromArray(liver.astype(np.uint8))
    image.SetSpacing(tuple(float(s) for s in spacing_xyz))
    distance = sitk.SignedMaurerDistanceMap(
        image, insideIsPositive=False, squaredDistance=False, useImageSpacing=True
    )
    mm = np.rint(sitk.GetArrayViewFromImage(distance))
    return (np.clip(mm, -DISTANCE_ZERO, 255 - DISTANCE_ZERO) + DISTANCE_ZERO).astype(np.uint8)


def build_cache(
    folder: Path,
    items: list[Item],
    stage: str,
    spacing,
    window,
    size=None,
    progress: Progress | None = None,
) -> list[Case]:
    """Cases for ``items``, made once under ``folder`` and memory-mapped afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    settings = {
        "version": CACHE_VERSION,
        "stage": stage,
        "spacing": [float(v) for v in spacing],
        "window": [float(v) for v in window],
        "size": list(size) if size else None,
    }
    manifest = folder / "cache.json"
    if manifest.is_file() and json.loads(manifest.read_text())["settings"] != settings:
        raise DeepLiverError(f"cache {folder} was made with other settings; use a new run folder")
    manifest.write_text(json.dumps({"settings": settings}, indent=1))
    names = ("target", "image") + (("ungated", "liver_distance") if stage == "tumor" else ())
    cases = []
    for number, item in enumerate(items):
        paths = {name: folder / f"{item.stem}.{name}.npy" for name in names}
        if not all(path.is_file() for path in paths.values()):
            ct, labels = item.load()
            arrays = prepare_arrays(ct, labels, stage, spacing, window)
            for name, path in paths.items():
                array = arrays[name]
                write_atomically(path, lambda temporary, a=array: np.save(temporary, a), ".npy")
        arrays = {name: np.load(path, mmap_mode="r") for name, path in paths.items()}
        foreground = _foreground_sample(arrays["target"], item.seed, per_lesion=stage == "tumor")
        cases.append(Case(item.seed, foreground=foreground, **arrays))
        if progress:
            progress(f"caching cases ({folder.name})", (number + 1) / len(items))
    return cases


def _foreground_sample(
    target: np.ndarray, seed: int, per_lesion: bool, limit: int = 20000
) -> np.ndarray:
    """Target voxels that foreground patches are centred on.

    With ``per_lesion`` (the tumor stage), each connected lesion gets an equal share: drawn by
    voxel, a 50 mm lesion would be drawn 100 times as often as an 11 mm one, and the small
    lesions are the ones the tumor stage missed. The liver is one structure, drawn by voxel; the
    detectors draw their slices themselves.
    """
    mask = np.asarray(target) > 0
    rng = np.random.default_rng(seed)
    if not per_lesion:
        points = np.argwhere(mask).astype(np.int32)
        if len(points) > limit:
            points = points[rng.choice(len(points), limit, replace=False)]
        return points
    lesions, count = ndimage.label(mask, structure=LESION_CONNECTIVITY)
    share = max(1, limit // max(count, 1))
    parts = [np.zeros((0, 3), np.int32)]
    for number, box in enumerate(ndimage.find_objects(lesions), start=1):
        points = np.argwhere(lesions[box] == number) + [s.start for s in box]
        parts.append(points[rng.choice(len(points), share, replace=len(points) < share)])
    return np.concatenate(parts).astype(np.int32)
