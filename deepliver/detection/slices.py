"""Axial slices of 3D CT cases as a 2D tumor-detection dataset (PNG + Pascal VOC and/or YOLO).

Split by patient, never by slice: neighbouring slices of one patient are near copies, so a
slice-level split would leak the test set into training. Every tumor slice is written; liver
slices without tumor are drawn as negatives at a ratio over the whole dataset (so a patient
without tumor still contributes negatives), with empty label files rather than missing ones.
Cases are read twice, one at a time (first the slice flags, then the files), to bound memory.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from deepliver.datasets import Case
from deepliver.detection.boxes import boxes_from_mask
from deepliver.detection.formats import CLASS_NAME, write_voc, write_yolo
from deepliver.errors import DeepLiverError
from deepliver.io.atomic import write_atomically
from deepliver.models.predict import normalise_uint8
from deepliver.progress import Progress

SPLITS = ("train", "valid", "test")
FORMATS = ("voc", "yolo")
MANIFEST = "manifest.json"
TOOL = "deepliver slices"
TUMOR = 2
# Who gets a patient first when there are fewer patients than non-empty splits.
SPLIT_PRIORITY = ("train", "test", "valid")


def split_cases(
    names: Sequence[str], fractions: Sequence[float], seed: int
) -> dict[str, list[str]]:
    """Patients shuffled with ``seed`` and cut by ``fractions`` (train, valid, test).

    Each split with a positive fraction gets at least one patient while there are enough;
    with fewer, train and then test come first (2 patients: train and test, valid empty).
    """
    names = list(names)
    if len(names) < 2:
        raise DeepLiverError(
            f"cannot split {len(names)} patient(s) into train and test without leaking slices "
            "of one patient into both; give at least 2 cases"
        )
    if len(set(names)) != len(names):
        raise DeepLiverError("case names must be unique (each case is one patient)")
    weights = _checked_fractions(fractions)
    counts = _split_counts(len(names), weights)
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    split, start = {}, 0
    for name in SPLITS:
        split[name] = sorted(order[start : start + counts[name]])
        start += counts[name]
    return split


def export_slices(
    cases: Sequence[Case],
    out: Path,
    *,
    formats: Sequence[str] = FORMATS,
    channels: int = 1,
    negatives: float = 0.5,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    window: tuple[float, float] = (-100.0, 250.0),
    progress: Progress | None = None,
) -> dict:
    """Write the dataset under ``out`` and return its manifest (also ``out/manifest.json``)."""
    formats = _checked_settings(formats, channels, negatives, window)
    split = split_cases([case.name for case in cases], fractions, seed)
    out = Path(out)
    _clear_previous_export(out)
    settings = {
        "formats": list(formats),
        "channels": channels,
        "negatives_per_positive": negatives,
        "split_fractions": [float(f) for f in fractions],
        "seed": seed,
        "window_hu": [float(w) for w in window],
    }
    _write_json(out / MANIFEST, {"tool": TOOL, "complete": False, "settings": settings})
    flags = _slice_flags(cases, progress)
    chosen = _chosen_slices(flags, negatives, seed)
    case_split = {name: part for part, names in split.items() for name in names}
    files = []
    for number, case in enumerate(cases):
        if progress:
            progress(f"writing slices of {case.name}", 0.3 + 0.7 * number / len(cases))
        files += _write_case(case, chosen[case.name], case_split[case.name], out, settings)
    manifest = _manifest(settings, split, flags, files, fractions)
    _write_text(out / "classes.txt", f"{CLASS_NAME}\n")
    _write_text(out / "dataset.yaml", _dataset_yaml(out))
    _write_text(out / "README.md", _readme(manifest))
    _write_json(out / MANIFEST, manifest)
    if progress:
        progress("slices written", 1.0)
    return manifest


# --- settings and split ------------------------------------------------------------------


def _checked_fractions(fractions: Sequence[float]) -> dict[str, float]:
    values = [float(f) for f in fractions]
    if len(values) != 3 or min(values) < 0 or values[0] <= 0:
        raise DeepLiverError(
            f"--split {' '.join(map(str, fractions))}: give 3 fractions (train valid test), "
            "none negative, train above 0"
        )
    total = sum(values)
    return {name: value / total for name, value in zip(SPLITS, values, strict=True)}


def _split_counts(count: int, weights: dict[str, float]) -> dict[str, int]:
    """Largest-remainder rounding, then one patient moved to each empty non-empty split."""
    wanted = [name for name in SPLIT_PRIORITY if weights[name] > 0]
    if count < len(wanted):
        return {name: int(name in wanted[:count]) for name in SPLITS}
    exact = {name: count * weights[name] for name in SPLITS}
    counts = {name: int(exact[name]) for name in SPLITS}
    by_remainder = sorted(SPLITS, key=lambda name: counts[name] - exact[name])
    for name in by_remainder[: count - sum(counts.values())]:
        counts[name] += 1
    for name in wanted:
        if counts[name] == 0:
            donor = max(SPLITS, key=lambda other: counts[other])
            counts[donor] -= 1
            counts[name] = 1
    return counts


def _checked_settings(formats, channels, negatives, window) -> tuple[str, ...]:
    formats = tuple(dict.fromkeys(formats))
    if not formats or any(f not in FORMATS for f in formats):
        raise DeepLiverError(f"formats {list(formats)}: choose from {list(FORMATS)}")
    if channels not in (1, 3):
        raise DeepLiverError(f"--channels {channels}: 1 (the slice) or 3 (with its neighbours)")
    if not negatives >= 0:
        raise DeepLiverError(f"--negatives {negatives}: must be 0 or more")
    if not float(window[0]) < float(window[1]):
        raise DeepLiverError(f"--window {window[0]} {window[1]}: LOW must be below HIGH")
    return formats


def _clear_previous_export(out: Path) -> None:
    """Refuse a folder we did not write; empty one we did (a re-run replaces it)."""
    if out.exists() and not out.is_dir():
        raise DeepLiverError(f"{out}: exists and is not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    manifest = out / MANIFEST
    try:
        ours = json.loads(manifest.read_text()).get("tool") == TOOL
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise DeepLiverError(
            f"{out}: not empty and not a previous `deepliver slices` export (no {MANIFEST} "
            "from it); choose an empty or new folder so files are not mixed"
        )
    for name in SPLITS:
        shutil.rmtree(out / name, ignore_errors=True)
    for name in ("classes.txt", "dataset.yaml", "README.md"):
        (out / name).unlink(missing_ok=True)


# --- which slices ------------------------------------------------------------------------


def _slice_flags(cases: Sequence[Case], progress: Progress | None) -> dict[str, dict]:
    """Per case: indices of tumor slices and of liver-only slices (first pass, labels only)."""
    flags = {}
    for number, case in enumerate(cases):
        if progress:
            progress(f"reading {case.name}", 0.3 * number / len(cases))
        _, labels = _load(case)
        liver = np.any(labels > 0, axis=(1, 2))
        tumor = np.any(labels == TUMOR, axis=(1, 2))
        flags[case.name] = {
            "positive": np.flatnonzero(tumor).tolist(),
            "negative": np.flatnonzero(liver & ~tumor).tolist(),
        }
    return flags


def _chosen_slices(flags: dict[str, dict], negatives: float, seed: int) -> dict[str, list[int]]:
    """All tumor slices, plus round(ratio * tumor slices) liver-only slices drawn with ``seed``."""
    pool = [(name, z) for name, f in flags.items() for z in f["negative"]]
    positives = sum(len(f["positive"]) for f in flags.values())
    count = min(len(pool), int(round(negatives * positives)))
    drawn = np.random.default_rng([seed, 1]).choice(len(pool), count, replace=False)
    chosen = {name: list(f["positive"]) for name, f in flags.items()}
    for index in drawn:
        name, z = pool[int(index)]
        chosen[name].append(z)
    return {name: sorted(slices) for name, slices in chosen.items()}


# --- files -------------------------------------------------------------------------------


def _load(case: Case) -> tuple[np.ndarray, np.ndarray]:
    """(HU, labels) in patient order: axial slices, radiological view, whatever the storage."""
    ct, labels = case.load()
    if ct.array.shape != labels.array.shape:
        raise DeepLiverError(
            f"case {case.name}: labels {labels.array.shape} and CT {ct.array.shape} differ in shape"
        )
    return ct.patient_ordered().array, np.asarray(labels.patient_ordered().array)


def _write_case(case: Case, slices: list[int], split: str, out: Path, settings: dict) -> list:
    if not slices:
        return []
    hu, labels = _load(case)
    window, channels = settings["window_hu"], settings["channels"]
    files = []
    for z in slices:
        stem = f"{case.name}_{z:04d}"
        image = _slice_image(hu, z, window, channels)
        height, width = image.shape[:2]
        boxes = boxes_from_mask(labels[z] == TUMOR)
        written = [_write_png(out / split / "images" / f"{stem}.png", image)]
        if "voc" in settings["formats"]:
            path = out / split / "voc" / f"{stem}.xml"
            written.append(write_voc(path, f"{stem}.png", width, height, channels, boxes))
        if "yolo" in settings["formats"]:
            written.append(write_yolo(out / split / "yolo" / f"{stem}.txt", boxes, width, height))
        for path in written:
            files.append(_file_entry(path, out, case.name, split, z, len(boxes)))
    return files


def _slice_image(hu: np.ndarray, z: int, window, channels: int) -> np.ndarray:
    """uint8 of the window; 3 channels = slices (z-1, z, z+1), edges repeated."""
    if channels == 1:
        return normalise_uint8(hu[z], window)
    last = hu.shape[0] - 1
    planes = [hu[min(max(k, 0), last)] for k in (z - 1, z, z + 1)]
    return np.stack([normalise_uint8(plane, window) for plane in planes], -1)


def _write_png(path: Path, image: np.ndarray) -> Path:
    return write_atomically(path, lambda temporary: Image.fromarray(image).save(temporary, "PNG"))


def _file_entry(path: Path, out: Path, case: str, split: str, z: int, boxes: int) -> dict:
    return {
        "path": path.relative_to(out).as_posix(),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "boxes": boxes,
        "slice": z,
        "case": case,
        "split": split,
    }


# --- manifest and descriptions -----------------------------------------------------------


def _manifest(settings, split, flags, files, fractions) -> dict:
    images = [f for f in files if f["path"].endswith(".png")]
    summary = {
        name: {
            "cases": len(split[name]),
            "slices": sum(f["split"] == name for f in images),
            "tumor_slices": sum(f["split"] == name and f["boxes"] > 0 for f in images),
            "boxes": sum(f["boxes"] for f in images if f["split"] == name),
        }
        for name in SPLITS
    }
    notes = [
        f"{name} is empty: too few patients ({len(flags)}) to give every split one"
        for name, fraction in zip(SPLITS, fractions, strict=True)
        if fraction > 0 and not split[name]
    ]
    if not any(f["positive"] for f in flags.values()):
        notes.append("no tumor slice in any case, so no negatives were drawn either")
    return {
        "tool": TOOL,
        "complete": True,
        "settings": settings,
        "splits": split,
        "summary": summary,
        "notes": notes,
        "files": files,
    }


def _dataset_yaml(out: Path) -> str:
    return (
        "# YOLO data file written by `deepliver slices` (labels are in <split>/yolo/)\n"
        f"path: {out.resolve().as_posix()}\n"
        "train: train/images\n"
        "val: valid/images\n"
        "test: test/images\n"
        f"names: [{CLASS_NAME}]\n"
    )


def _readme(manifest: dict) -> str:
    settings, summary = manifest["settings"], manifest["summary"]
    low, high = settings["window_hu"]
    rows = "\n".join(
        f"| {name} | {s['cases']} | {s['slices']} | {s['tumor_slices']} | {s['boxes']} |"
        for name, s in summary.items()
    )
    channels = (
        "1 (grayscale: the axial slice)"
        if settings["channels"] == 1
        else "3 (RGB = slices z-1, z, z+1; the first and last slice repeat at the edges)"
    )
    notes = "".join(f"- {note}\n" for note in manifest["notes"]) or "- none\n"
    return f"""# Tumor detection slices (`deepliver slices`)

Axial slices (full slice, native in-plane size) of 3D CT cases with tumor boxes, one class:
`tumor` (`classes.txt`). Only slices with liver are used: every slice with tumor, plus
{settings["negatives_per_positive"]} liver slice(s) without tumor per tumor slice (over the
whole dataset), drawn with seed {settings["seed"]}. Negatives have an empty YOLO file and a VOC
file with no `object`.

## Images

PNG, uint8, channels: {channels}. HU window LOW = {low:g}, HIGH = {high:g}:
`pixel = round((clip(HU, LOW, HIGH) - LOW) / (HIGH - LOW) * 255)`.

## Boxes

One box per connected tumor component on the slice (OpenCV `findContours`, `RETR_EXTERNAL`,
`boundingRect`). Coordinates are pixel edges: `xmin = x`, `ymin = y`, `xmax = x + w`,
`ymax = y + h` for a component covering columns x..x+w-1 and rows y..y+h-1, so a one-pixel
lesion is a 1x1 box (what torchvision detectors take).

- `voc/*.xml`: Pascal VOC, `bndbox` in those pixel-edge coordinates (integers).
- `yolo/*.txt`: `0 cx cy w h`, normalised by image width and height, 6 decimals.
  `dataset.yaml` names the image folders; tools that look for labels in a `labels` folder
  beside `images` (Ultralytics) need `yolo` renamed or linked to `labels`.

## Split

By patient, never by slice (cases shuffled with seed {settings["seed"]}, fractions
{settings["split_fractions"]} for train/valid/test); the cases of each split are in
`manifest.json`, with the sha256, box count, slice index and case of every file.

| split | cases | slices | tumor slices | boxes |
|---|---|---|---|---|
{rows}

Notes:
{notes}"""


def _write_text(path: Path, text: str) -> Path:
    return write_atomically(path, lambda temporary: temporary.write_text(text))


def _write_json(path: Path, data: dict) -> Path:
    return _write_text(path, json.dumps(data, indent=1) + "\n")
