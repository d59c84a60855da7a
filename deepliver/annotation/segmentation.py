"""Named, coded segments on one grid: what a radiologist draws, and what a revision stores.

A label map (0 background, 1 liver, 2 tumor) cannot say "tumor 3" or let structures overlap;
a :class:`Segmentation` can. Each segment is a binary mask on the series grid and knows which
:class:`~deepliver.annotation.structures.Structure` it is. The liver segment is the whole
organ, tumors included, so segments overlap where tumors lie; in a label map a tumor wins.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from deepliver.annotation.structures import LIVER, TUMOR, Structure, structure_by_label
from deepliver.errors import DeepLiverError
from deepliver.volume import Box, Grid, GridMismatchError, Volume

# Face, edge and corner neighbours: two tumor voxels touching at a corner are one lesion.
LESION_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)


@dataclass(frozen=True)
class Segment:
    """One drawn structure: "Liver", or one tumor ("Tumor 2") among several."""

    name: str
    structure: Structure
    color: tuple[int, int, int] | None = None  # RGB 0..255; None = the structure's colour

    @property
    def display_color(self) -> tuple[int, int, int]:
        return self.color or self.structure.color


@dataclass(frozen=True, eq=False)
class Segmentation:
    """Segments with one boolean mask each, shaped (segment, z, y, x), on ``grid``."""

    grid: Grid
    segments: tuple[Segment, ...] = ()
    masks: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        segments = tuple(self.segments)
        masks = self.masks
        if masks is None:
            masks = np.zeros((0, *self.grid.shape), dtype=bool)
        masks = np.asarray(masks)
        if masks.shape != (len(segments), *self.grid.shape):
            raise GridMismatchError(
                f"masks of shape {masks.shape} do not fit {len(segments)} segment(s) on a grid "
                f"of shape {self.grid.shape}"
            )
        names = [s.name for s in segments]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise DeepLiverError(f"segment names must be unique; repeated: {duplicates}")
        object.__setattr__(self, "segments", segments)
        object.__setattr__(self, "masks", masks.astype(bool, copy=False))

    # --- from and to label maps --------------------------------------------------------

    @classmethod
    def from_label_map(cls, labels: Volume, split_tumors: bool = True) -> Segmentation:
        """Liver (labels 1 and 2) and tumors (label 2), each lesion its own segment if split."""
        values = {int(v) for v in np.unique(labels.array[labels.array != 0])}
        for value in sorted(values):
            structure_by_label(value)  # refuses a value no structure has
        liver = (labels.array == LIVER.label) | (labels.array == TUMOR.label)
        tumor = labels.array == TUMOR.label
        if split_tumors:
            numbers, box, count = lesion_labels(tumor)
        else:
            numbers, box, count = tumor, Box((0, 0, 0), labels.shape), int(tumor.any())
        has_liver = bool(liver.any())
        segments = [Segment(LIVER.name, LIVER)] * has_liver
        segments += [
            Segment(f"Tumor {n}" if split_tumors else "Tumor", TUMOR) for n in range(1, count + 1)
        ]
        # One allocation for every mask: a series with dozens of lesions stays affordable.
        masks = np.zeros((len(segments), *labels.shape), dtype=bool)
        if has_liver:
            masks[0] = liver
        for number in range(1, count + 1):
            masks[has_liver + number - 1][box.slices] = numbers == number
        return cls(labels.grid, tuple(segments), masks)

    def label_map(self) -> Volume:
        """uint8 labels on the grid: structures painted in label order, so a tumor wins."""
        labels = np.zeros(self.grid.shape, dtype=np.uint8)
        order = sorted(range(len(self.segments)), key=lambda i: self.segments[i].structure.label)
        for index in order:
            labels[self.masks[index]] = self.segments[index].structure.label
        return Volume(labels, self.grid)

    # --- questions and edits -----------------------------------------------------------

    def mask(self, name: str) -> np.ndarray:
        return self.masks[self._index(name)]

    def of_structure(self, structure: Structure) -> list[Segment]:
        return [s for s in self.segments if s.structure == structure]

    def with_segment(self, segment: Segment, mask: np.ndarray) -> Segmentation:
        """A copy with ``segment`` added; its mask must be on this grid."""
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != self.grid.shape:
            raise GridMismatchError(
                f"segment {segment.name!r} has shape {mask.shape}, the grid {self.grid.shape}"
            )
        masks = np.concatenate([self.masks, mask[np.newaxis]])
        return Segmentation(self.grid, (*self.segments, segment), masks)

    def without_segment(self, name: str) -> Segmentation:
        index = self._index(name)
        keep = [i for i in range(len(self.segments)) if i != index]
        return Segmentation(self.grid, tuple(self.segments[i] for i in keep), self.masks[keep])

    def _index(self, name: str) -> int:
        for index, segment in enumerate(self.segments):
            if segment.name == name:
                return index
        known = ", ".join(s.name for s in self.segments) or "none"
        raise DeepLiverError(f"no segment named {name!r}; segments: {known}")


def next_tumor_name(names: Iterable[str]) -> str:
    """ "Tumor n" with the smallest n not among ``names``, for a newly drawn lesion."""
    taken = set(names)
    number = 1
    while f"Tumor {number}" in taken:
        number += 1
    return f"Tumor {number}"


def lesion_labels(tumor: np.ndarray) -> tuple[np.ndarray, Box | None, int]:
    """Lesion numbers (int32, 0 = none) inside the tumor's bounding box, the box, and the count.

    Lesion 1 is the largest; ties go to the lesion whose first voxel in (z, y, x) order comes
    first. Working in the box keeps a 512 x 512 x 200 series fast (the order is the same as over
    the whole volume: the box only shifts every index by one offset).
    """
    tumor = np.asarray(tumor, dtype=bool)
    box = Box.around(tumor)
    if box is None:
        return np.zeros((0, 0, 0), dtype=np.int32), None, 0
    components, count = ndimage.label(tumor[box.slices], structure=LESION_CONNECTIVITY)
    sizes = np.bincount(components.ravel())[1:]
    firsts = ndimage.minimum_position(components > 0, components, range(1, count + 1))
    order = sorted(range(count), key=lambda i: (-sizes[i], tuple(firsts[i])))
    renumber = np.zeros(count + 1, dtype=np.int32)
    renumber[[i + 1 for i in order]] = np.arange(1, count + 1, dtype=np.int32)
    return renumber[components], box, count


def lesion_masks(tumor: np.ndarray) -> list[np.ndarray]:
    """One mask per connected lesion, numbered as :func:`lesion_labels` numbers them."""
    numbers, box, count = lesion_labels(tumor)
    masks = []
    for number in range(1, count + 1):
        mask = np.zeros(np.shape(tumor), dtype=bool)
        mask[box.slices] = numbers == number
        masks.append(mask)
    return masks
