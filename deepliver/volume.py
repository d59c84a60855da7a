"""A volume is voxels plus the grid that places them in the patient (LPS, as DICOM and ITK).

Conventions, used everywhere in DeepLiver:
- ``array`` is indexed (z, y, x) = (k, j, i), like ``SimpleITK.GetArrayFromImage`` and Slicer's
  ``arrayFromVolume``.
- ``origin``, ``spacing`` and the columns of ``direction`` are given in (i, j, k) order, like
  SimpleITK: ``origin`` is the LPS position (mm) of the centre of voxel (0, 0, 0), ``spacing[0]``
  is the distance between columns, and ``direction[:, 0]`` the LPS unit vector along i.
- Indices passed to or returned by :class:`Grid` methods are (i, j, k), continuous.

The only LPS <-> RAS flip lives in :meth:`Grid.ijk_to_ras` / :meth:`Grid.from_ijk_to_ras`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from deepliver.errors import DeepLiverError

# LPS and RAS differ by the sign of their first two axes; the flip is its own inverse.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

# Grids closer than this are the same grid (mm for positions, unitless for directions).
POSITION_TOLERANCE_MM = 1e-3
DIRECTION_TOLERANCE = 1e-5


class GridMismatchError(DeepLiverError, ValueError):
    """A voxel array was offered for a grid it does not belong to."""


def _vector(values, name: str) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float64).reshape(-1)
    if vector.shape != (3,):
        raise ValueError(f"{name} must have 3 values, got {vector.shape[0]}")
    return vector


@dataclass(frozen=True, eq=False)
class Grid:
    """Where a (z, y, x) voxel array sits in LPS space."""

    shape: tuple[int, int, int]
    origin: np.ndarray = field(default_factory=lambda: np.zeros(3))
    spacing: np.ndarray = field(default_factory=lambda: np.ones(3))
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))

    def __post_init__(self) -> None:
        shape = tuple(int(n) for n in self.shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"a grid needs 3 positive dimensions (z, y, x), got {self.shape}")
        spacing = _vector(self.spacing, "spacing")
        if np.any(spacing <= 0):
            raise ValueError(f"spacing must be positive, got {spacing.tolist()}")
        direction = np.asarray(self.direction, dtype=np.float64).reshape(3, 3)
        if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-4):
            raise ValueError(f"direction must be orthonormal, got {direction.tolist()}")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "origin", _vector(self.origin, "origin"))
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "direction", direction)

    # --- index <-> physical -------------------------------------------------------------

    def ijk_to_lps(self) -> np.ndarray:
        """4x4 matrix taking homogeneous (i, j, k, 1) to (L, P, S, 1)."""
        matrix = np.eye(4)
        matrix[:3, :3] = self.direction * self.spacing
        matrix[:3, 3] = self.origin
        return matrix

    def ijk_to_ras(self) -> np.ndarray:
        """4x4 matrix for Slicer (``vtkMRMLVolumeNode.SetIJKToRASMatrix``)."""
        return LPS_TO_RAS @ self.ijk_to_lps()

    @classmethod
    def from_ijk_to_ras(cls, matrix: np.ndarray, shape: tuple[int, int, int]) -> Grid:
        """The grid of a Slicer volume node, from its IJKToRAS matrix and its array shape."""
        lps = LPS_TO_RAS @ np.asarray(matrix, dtype=np.float64)
        axes = lps[:3, :3]
        spacing = np.linalg.norm(axes, axis=0)
        return cls(shape, lps[:3, 3], spacing, axes / spacing)

    def index_to_physical(self, ijk) -> np.ndarray:
        """LPS points (mm) of continuous (i, j, k) indices; works on (..., 3) arrays."""
        ijk = np.asarray(ijk, dtype=np.float64)
        return ijk @ (self.direction * self.spacing).T + self.origin

    def physical_to_index(self, points) -> np.ndarray:
        """Continuous (i, j, k) indices of LPS points (mm); works on (..., 3) arrays."""
        points = np.asarray(points, dtype=np.float64)
        return ((points - self.origin) @ self.direction) / self.spacing

    @property
    def size_ijk(self) -> tuple[int, int, int]:
        return self.shape[2], self.shape[1], self.shape[0]

    @property
    def slice_normal(self) -> np.ndarray:
        return self.direction[:, 2]

    def center(self) -> np.ndarray:
        return self.index_to_physical((np.array(self.size_ijk) - 1) / 2.0)

    # --- comparing and deriving grids ---------------------------------------------------

    def same_as(self, other: Grid) -> bool:
        return (
            self.shape == other.shape
            and np.allclose(self.spacing, other.spacing, atol=POSITION_TOLERANCE_MM, rtol=0)
            and np.allclose(self.origin, other.origin, atol=POSITION_TOLERANCE_MM, rtol=0)
            and np.allclose(self.direction, other.direction, atol=DIRECTION_TOLERANCE, rtol=0)
        )

    def describe_difference(self, other: Grid) -> str:
        """One line naming what differs, for error messages."""
        parts = []
        if self.shape != other.shape:
            parts.append(f"shape {self.shape} vs {other.shape}")
        for name in ("spacing", "origin", "direction"):
            mine, theirs = getattr(self, name), getattr(other, name)
            tolerance = DIRECTION_TOLERANCE if name == "direction" else POSITION_TOLERANCE_MM
            if not np.allclose(mine, theirs, atol=tolerance, rtol=0):
                parts.append(
                    f"{name} {np.round(mine, 4).tolist()} vs {np.round(theirs, 4).tolist()}"
                )
        return "; ".join(parts) or "same grid"

    def cropped(self, box: Box) -> Grid:
        box = box.clipped(self.shape)
        start_ijk = np.array(box.start[::-1], dtype=np.float64)
        return Grid(box.shape, self.index_to_physical(start_ijk), self.spacing, self.direction)

    def patient_axes(self) -> tuple[tuple[int, bool], ...]:
        """For L, P and S in turn: the nearest axis (0 = i, 1 = j, 2 = k) and whether it runs
        the other way."""
        order = max(
            itertools.permutations(range(3)),
            key=lambda order: sum(abs(self.direction[a, c]) for a, c in enumerate(order)),
        )
        return tuple((c, bool(self.direction[a, c] < 0)) for a, c in enumerate(order))

    def patient_ordered(self) -> Grid:
        """The same voxels, the axes relabelled so that i runs nearest to L, j to P and k to S.

        The phantoms every model learnt from lie that way; a NIfTI stored RAS, slices stored
        head first or a sagittal series would otherwise show a model a mirrored or turned body.
        Oblique axes stay oblique.
        """
        axes, size_ijk = self.patient_axes(), self.size_ijk
        origin, columns = self.origin.copy(), []
        for c, backwards in axes:
            axis = self.direction[:, c]
            if backwards:  # index 0 moves to the far end
                origin = origin + axis * self.spacing[c] * (size_ijk[c] - 1)
                axis = -axis
            columns.append(axis)
        size = [size_ijk[c] for c, _ in axes]
        spacing = [self.spacing[c] for c, _ in axes]
        return Grid((size[2], size[1], size[0]), origin, spacing, np.column_stack(columns))

    def with_spacing(self, spacing) -> Grid:
        """A grid over the same box of space (outer voxel corners kept) at another spacing."""
        spacing = _vector(spacing, "spacing")
        extent = np.array(self.size_ijk) * self.spacing
        size_ijk = np.maximum(1, np.round(extent / spacing)).astype(int)
        corner = self.origin - self.direction @ (self.spacing / 2)
        origin = corner + self.direction @ (spacing / 2)
        return Grid(tuple(size_ijk[::-1]), origin, spacing, self.direction)

    def offset_in(self, outer: Grid) -> tuple[int, int, int]:
        """(z, y, x) voxel offset of this grid inside ``outer``; both must share the lattice."""
        if not (
            np.allclose(self.spacing, outer.spacing, atol=POSITION_TOLERANCE_MM, rtol=0)
            and np.allclose(self.direction, outer.direction, atol=DIRECTION_TOLERANCE, rtol=0)
        ):
            raise GridMismatchError(
                f"grids do not share a voxel lattice: {self.describe_difference(outer)}"
            )
        ijk = outer.physical_to_index(self.origin)
        rounded = np.round(ijk)
        if np.any(np.abs(ijk - rounded) * outer.spacing > POSITION_TOLERANCE_MM):
            raise GridMismatchError(f"grid origin falls between voxels of the outer grid ({ijk})")
        i, j, k = (int(v) for v in rounded)
        return k, j, i


@dataclass(frozen=True)
class Box:
    """A voxel box in (z, y, x) index order, ``start`` inclusive, ``stop`` exclusive."""

    start: tuple[int, int, int]
    stop: tuple[int, int, int]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(b - a for a, b in zip(self.start, self.stop, strict=True))

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop, strict=True))

    def clipped(self, shape: tuple[int, int, int]) -> Box:
        start = tuple(max(0, a) for a in self.start)
        stop = tuple(min(n, b) for n, b in zip(shape, self.stop, strict=True))
        if any(b <= a for a, b in zip(start, stop, strict=True)):
            raise ValueError(f"box {self} does not overlap a grid of shape {shape}")
        return Box(start, stop)

    @classmethod
    def around(cls, mask: np.ndarray, margin_voxels=(0, 0, 0)) -> Box | None:
        """Bounding box of the non-zero voxels, widened by a margin and clipped; None if empty."""
        if not mask.any():
            return None
        starts, stops = [], []
        for axis in range(3):
            other = tuple(a for a in range(3) if a != axis)
            hits = np.flatnonzero(mask.any(axis=other))
            margin = int(np.ceil(np.asarray(margin_voxels)[axis]))
            starts.append(max(0, int(hits[0]) - margin))
            stops.append(min(mask.shape[axis], int(hits[-1]) + 1 + margin))
        return cls(tuple(starts), tuple(stops))


@dataclass(frozen=True, eq=False)
class Volume:
    """Voxels (z, y, x) on a :class:`Grid`."""

    array: np.ndarray
    grid: Grid

    def __post_init__(self) -> None:
        if tuple(self.array.shape) != self.grid.shape:
            raise GridMismatchError(
                f"array shape {tuple(self.array.shape)} does not match grid shape {self.grid.shape}"
            )

    @classmethod
    def from_array(cls, array: np.ndarray, origin=(0, 0, 0), spacing=(1, 1, 1), direction=None):
        grid = Grid(array.shape, origin, spacing, np.eye(3) if direction is None else direction)
        return cls(array, grid)

    @property
    def origin(self) -> np.ndarray:
        return self.grid.origin

    @property
    def spacing(self) -> np.ndarray:
        return self.grid.spacing

    @property
    def direction(self) -> np.ndarray:
        return self.grid.direction

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.grid.shape

    def with_array(self, array: np.ndarray) -> Volume:
        """Other voxels on the same grid (a label map for this image, say)."""
        return Volume(array, self.grid)

    def require_same_grid(self, other: Grid | Volume, what: str = "label map") -> None:
        other_grid = other.grid if isinstance(other, Volume) else other
        if not self.grid.same_as(other_grid):
            difference = self.grid.describe_difference(other_grid)
            raise GridMismatchError(f"{what} is not on the grid of its image: {difference}")

    # --- SimpleITK ---------------------------------------------------------------------

    @classmethod
    def from_sitk(cls, image: sitk.Image) -> Volume:
        if image.GetDimension() != 3:
            raise ValueError(f"expected a 3D image, got {image.GetDimension()}D")
        if image.GetNumberOfComponentsPerPixel() != 1:
            raise ValueError("expected a scalar image, got a multi-component one")
        array = sitk.GetArrayFromImage(image)
        grid = Grid(array.shape, image.GetOrigin(), image.GetSpacing(), image.GetDirection())
        return cls(array, grid)

    def to_sitk(self) -> sitk.Image:
        image = sitk.GetImageFromArray(self.array)
        image.SetOrigin(tuple(float(v) for v in self.origin))
        image.SetSpacing(tuple(float(v) for v in self.spacing))
        image.SetDirection(tuple(float(v) for v in self.direction.reshape(-1)))
        return image

    # --- crop and paste ----------------------------------------------------------------

    def crop(self, box: Box) -> Volume:
        box = box.clipped(self.shape)
        return Volume(self.array[box.slices].copy(), self.grid.cropped(box))

    def paste_into(self, outer: Grid | Volume, fill=0) -> Volume:
        """This (cropped) volume put back onto a larger grid sharing its voxel lattice."""
        outer_grid = outer.grid if isinstance(outer, Volume) else outer
        if isinstance(outer, Volume):
            result = outer.array.copy()
        else:
            result = np.full(outer_grid.shape, fill, dtype=self.array.dtype)
        offset = self.grid.offset_in(outer_grid)
        stop = tuple(o + n for o, n in zip(offset, self.shape, strict=True))
        box = Box(offset, stop)
        clipped = box.clipped(outer_grid.shape)
        if clipped != box:
            raise GridMismatchError(f"box {box} reaches outside the outer grid {outer_grid.shape}")
        result[box.slices] = self.array
        return Volume(result, outer_grid)

    # --- resampling --------------------------------------------------------------------

    def patient_ordered(self) -> Volume:
        """The same voxels stored in patient order (:meth:`Grid.patient_ordered`), nothing
        resampled; the array is copied only when the storage was another order."""
        array = np.ascontiguousarray(patient_view(self.array, self.grid))
        return Volume(array, self.grid.patient_ordered())

    def resampled_to_spacing(self, spacing, label: bool = False) -> Volume:
        """This volume on the grid a model sees: over the same box, at ``spacing``, its axes in
        patient order (:meth:`Grid.patient_ordered`)."""
        return self.resampled_onto(self.grid.patient_ordered().with_spacing(spacing), label=label)

    def resampled_onto(
        self, grid: Grid, label: bool = False, fill=None, extrapolate: bool = False
    ) -> Volume:
        """This volume sampled on another grid: nearest neighbour for labels, linear otherwise.

        Beyond this volume's box, voxels get ``fill``, or with ``extrapolate`` the value of the
        nearest edge voxel: a model grid (:meth:`Grid.with_spacing`) may end up to half a model
        voxel short of the input's box, and the input's edge voxels still need the answer.
        """
        if grid.same_as(self.grid):
            return Volume(self.array.copy(), grid)
        if fill is None:
            fill = 0 if label else float(self.array.min())
        reference = sitk.Image(*grid.size_ijk, sitk.sitkUInt8)
        reference.SetOrigin(tuple(float(v) for v in grid.origin))
        reference.SetSpacing(tuple(float(v) for v in grid.spacing))
        reference.SetDirection(tuple(float(v) for v in grid.direction.reshape(-1)))
        interpolator = sitk.sitkNearestNeighbor if label else sitk.sitkLinear
        source = self.to_sitk()
        resampled = sitk.Resample(
            source,
            reference,
            sitk.Transform(),
            interpolator,
            fill,
            source.GetPixelID(),
            extrapolate,
        )
        return Volume(sitk.GetArrayFromImage(resampled), grid)


def patient_view(array: np.ndarray, grid: Grid) -> np.ndarray:
    """A (z, y, x) array on ``grid`` (or a box of it), viewed in patient order: axial slices
    first, then rows from the front, then columns from the right (:meth:`Grid.patient_ordered`)."""
    axes = grid.patient_axes()[::-1]  # S, P, L: the array's axis order
    view = np.transpose(array, [2 - c for c, _ in axes])
    return view[tuple(slice(None, None, -1 if backwards else 1) for _, backwards in axes)]


def flip_lps_ras(points) -> np.ndarray:
    """LPS points (mm) as RAS, or RAS as LPS: for Slicer markups; works on (..., 3) arrays."""
    return np.asarray(points, dtype=np.float64) * LPS_TO_RAS.diagonal()[:3]


def orientation_name(direction: np.ndarray, tolerance_degrees: float = 1.0) -> str:
    """'axial', 'coronal' or 'sagittal' when the slice normal is within tolerance of an axis."""
    normal = np.asarray(direction, dtype=np.float64).reshape(3, 3)[:, 2]
    names = ("sagittal", "coronal", "axial")  # normal along L, P, S
    axis = int(np.argmax(np.abs(normal)))
    if np.abs(normal[axis]) >= np.cos(np.deg2rad(tolerance_degrees)):
        return names[axis]
    return "oblique"
