"""Where a DICOM SEG's frames lie: checked against the source series, or read on their own.

Frame references alone do not prove a mask fits the source voxels (a SEG may be drawn on a
resampled grid), and few tools state SpatialLocationsPreserved; so each frame's orientation,
pixel spacing and position are compared with the slice it references.
"""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np

from deepliver.errors import DeepLiverError
from deepliver.io.source_series import SourceSeries
from deepliver.volume import Grid

# A frame further than this from its source slice position is on another grid (mm).
POSITION_TOLERANCE_MM = 1e-2


def _frame_item(frame, shared, keyword: str):
    for group in (frame, shared):
        if group is not None and keyword in group:
            return group[keyword].value[0]
    return None


def check_frames_on_grid(seg: hd.seg.Segmentation, path: Path, stack: SourceSeries) -> None:
    """Each frame must lie exactly on the source slice it references: references alone could
    put a mask drawn on a resampled grid onto the wrong voxels."""
    grid = stack.grid
    positions = {h.sop_uid: h.position for h in stack.info.slices}
    shared = (seg.get("SharedFunctionalGroupsSequence") or [None])[0]
    for number, frame in enumerate(seg.get("PerFrameFunctionalGroupsSequence") or [], start=1):
        orientation = _frame_item(frame, shared, "PlaneOrientationSequence")
        measures = _frame_item(frame, shared, "PixelMeasuresSequence")
        plane = _frame_item(frame, shared, "PlanePositionSequence")
        derivation = _frame_item(frame, None, "DerivationImageSequence")
        source = derivation and _frame_item(derivation, None, "SourceImageSequence")
        sop = str(source.ReferencedSOPInstanceUID) if source else None
        problems = []
        if sop is not None and sop not in positions:
            problems.append(f"it references instance {sop}, which the series lacks")
        if orientation is not None and not np.allclose(
            np.reshape(orientation.ImageOrientationPatient, (2, 3)).T,
            grid.direction[:, :2],
            atol=1e-4,
        ):
            problems.append("another orientation")
        if measures is not None and not np.allclose(
            [float(v) for v in measures.PixelSpacing], grid.spacing[[1, 0]], atol=1e-3
        ):
            problems.append("another pixel spacing")
        if plane is not None and sop in positions:
            offset = np.asarray(plane.ImagePositionPatient, dtype=np.float64) - positions[sop]
            if np.max(np.abs(offset)) > POSITION_TOLERANCE_MM:
                problems.append(f"a position {np.round(offset, 3).tolist()} mm off its slice")
        if problems:
            raise DeepLiverError(
                f"{path}: frame {number} does not lie on the grid of series "
                f"{stack.info.series_uid}: {', '.join(problems)}"
            )


def frames_on_own_planes(seg: hd.seg.Segmentation, path: Path) -> tuple[Grid, np.ndarray]:
    """Grid and pixels from the SEG's plane positions; the slice axis is made right-handed."""
    try:
        volume = seg.get_volume(skip_overlap_checks=True)
    except (RuntimeError, ValueError) as error:
        raise DeepLiverError(f"{path}: frames do not form a regular volume ({error})") from None
    affine = np.asarray(volume.affine, dtype=np.float64)  # (slice, row, column) -> LPS
    pixels = volume.array
    axes = affine[:3, [2, 1, 0]]  # our (i, j, k) = (column, row, slice)
    origin = affine[:3, 3]
    if np.linalg.det(axes) < 0:
        origin = origin + axes[:, 2] * (pixels.shape[0] - 1)
        axes[:, 2] = -axes[:, 2]
        pixels = pixels[::-1]
    spacing = np.linalg.norm(axes, axis=0)
    return Grid(pixels.shape[:3], origin, spacing, axes / spacing), pixels
