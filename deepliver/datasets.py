"""Cases with a CT and its true labels, for evaluation and dataset export.

``phantom:N`` makes N phantoms on the fly (seeds from a start the caller picks: held-out seeds
0-99 for evaluation, training seeds for training data); a folder is read in the Medical
Segmentation Decathlon layout (``imagesTs``/``labelsTs`` or ``imagesTr``/``labelsTr``, images
named ``<case>_0000.nii.gz`` or ``<case>.nii.gz``) or as case folders with ``ct.nii.gz`` and
``labels.nii.gz`` (what ``deepliver phantom`` writes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from deepliver.errors import DeepLiverError
from deepliver.volume import Volume

DEFAULT_PHANTOM_SIZE = (256, 256, 96)
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd")
PHANTOM_LIMIT = 100


@dataclass(frozen=True)
class Case:
    name: str
    load: Callable[[], tuple[Volume, Volume]]  # (CT in HU, labels 0/1/2) on one grid


def cases_from(
    data: str,
    size: tuple[int, int, int] = DEFAULT_PHANTOM_SIZE,
    first_seed: int = 0,
    part: str = "test",
) -> list[Case]:
    """The cases of ``--data``: ``phantom:N`` (seeds first_seed..first_seed+N-1) or a folder.

    In a Decathlon folder, ``part`` picks the cases: "train" reads imagesTr/labelsTr only (what
    training may see); "test" reads imagesTs/labelsTs when they are there, else imagesTr/labelsTr
    (what evaluation scores).
    """
    kind, _, count = data.partition(":")
    if kind == "phantom" and count:
        if not count.isdigit() or not 1 <= int(count) <= PHANTOM_LIMIT:
            raise DeepLiverError(f"--data {data!r}: phantom:N needs 1 <= N <= {PHANTOM_LIMIT}")
        return [_phantom_case(seed, size) for seed in range(first_seed, first_seed + int(count))]
    folder = Path(data)
    if not folder.is_dir():
        raise DeepLiverError(f"--data {data!r}: neither phantom:N nor a dataset folder")
    cases = list(_folder_cases(folder, part))
    if not cases:
        raise DeepLiverError(
            f"{folder}: no cases found (imagesTs/labelsTs, imagesTr/labelsTr, or case folders "
            "with ct.nii.gz and labels.nii.gz)"
        )
    return cases


def _phantom_case(seed: int, size: tuple[int, int, int]) -> Case:
    def load():
        from deepliver.phantom import PhantomSpec, make_phantom

        phantom = make_phantom(PhantomSpec(seed=seed, size=tuple(size)))
        return phantom.ct, phantom.labels

    return Case(f"phantom-{seed:02d}", load)


def _folder_cases(folder: Path, part: str) -> Iterator[Case]:
    parts = [("imagesTr", "labelsTr")]
    if part == "test":
        parts.insert(0, ("imagesTs", "labelsTs"))
    for images, labels in parts:
        if (folder / images).is_dir() and (folder / labels).is_dir():
            yield from _msd_cases(folder / images, folder / labels)
            return
    for case in sorted(p for p in folder.iterdir() if p.is_dir()):
        ct, labels = _image_in(case, "ct"), _image_in(case, "labels")
        if ct and labels:
            yield Case(case.name, _loader(ct, labels))


def _msd_cases(images: Path, labels: Path) -> Iterator[Case]:
    label_files = {_stem(p): p for p in labels.iterdir() if _stem(p)}
    for image in sorted(images.iterdir()):
        stem = _stem(image)
        if not stem:
            continue
        name = stem[:-5] if stem.endswith("_0000") else stem
        if name not in label_files:
            raise DeepLiverError(f"{image}: no label file {name}.nii.gz in {labels}")
        yield Case(name, _loader(image, label_files[name]))


def _loader(ct_path: Path, labels_path: Path):
    def load():
        from deepliver.annotation.structures import checked_labels
        from deepliver.io.image_files import read_image

        ct, labels = read_image(ct_path), checked_labels(read_image(labels_path), str(labels_path))
        if not labels.grid.same_as(ct.grid):
            raise DeepLiverError(
                f"{labels_path}: not on the grid of {ct_path} "
                f"({labels.grid.describe_difference(ct.grid)})"
            )
        return ct, labels

    return load


def _stem(path: Path) -> str | None:
    name = path.name
    suffix = next((s for s in IMAGE_SUFFIXES if name.lower().endswith(s)), None)
    if suffix is None or name.startswith("."):
        return None
    return name[: -len(suffix)]


def _image_in(folder: Path, stem: str) -> Path | None:
    return next(
        (folder / f"{stem}{s}" for s in IMAGE_SUFFIXES if (folder / f"{stem}{s}").is_file()), None
    )
