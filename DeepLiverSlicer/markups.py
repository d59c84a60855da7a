"""ROI markups <-> boxes in physical space.

A box is its two corners in LPS millimetres (``minimum`` <= ``maximum`` on each axis), the
space of :class:`deepliver.volume.Grid`. An ROI node is a centre and side lengths in RAS. Only
axis-aligned boxes are handled for now: an ROI turned by a rotation is refused. The LPS/RAS
flip is :func:`deepliver.volume.flip_lps_ras`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepliver.volume import flip_lps_ras

ROTATION_TOLERANCE = 1e-6


@dataclass(frozen=True, eq=False)
class PhysicalBox:
    """An axis-aligned box in LPS millimetres."""

    minimum: np.ndarray
    maximum: np.ndarray

    def __post_init__(self) -> None:
        low = np.asarray(self.minimum, dtype=np.float64).reshape(3)
        high = np.asarray(self.maximum, dtype=np.float64).reshape(3)
        if np.any(high < low):
            raise ValueError(f"box minimum {low.tolist()} exceeds maximum {high.tolist()}")
        object.__setattr__(self, "minimum", low)
        object.__setattr__(self, "maximum", high)

    @property
    def size(self) -> np.ndarray:
        return self.maximum - self.minimum

    @property
    def center(self) -> np.ndarray:
        return (self.minimum + self.maximum) / 2.0


def box_from_roi_geometry(center_ras, size, axes_ras=None) -> PhysicalBox:
    """The LPS box of an ROI with this RAS centre and side lengths (and axis directions)."""
    if axes_ras is not None:
        require_axis_aligned(axes_ras)
    center_lps = flip_lps_ras(center_ras)
    half = np.abs(np.asarray(size, dtype=np.float64)) / 2.0
    return PhysicalBox(center_lps - half, center_lps + half)


def roi_geometry_from_box(box: PhysicalBox) -> tuple[np.ndarray, np.ndarray]:
    """(RAS centre, side lengths) of an axis-aligned ROI covering ``box``."""
    return flip_lps_ras(box.center), box.size.copy()


def require_axis_aligned(axes) -> None:
    """Refuse ROI axes (3x3, columns = the ROI's x, y, z axes in RAS) that are not the identity."""
    axes = np.asarray(axes, dtype=np.float64)[:3, :3]
    if not np.allclose(axes, np.eye(3), atol=ROTATION_TOLERANCE, rtol=0):
        raise ValueError(
            "only axis-aligned ROIs are supported for now; this ROI is rotated "
            f"(axes {np.round(axes, 4).tolist()})"
        )


# --- Slicer ------------------------------------------------------------------------------


def box_from_roi(roi_node) -> PhysicalBox:
    """The LPS box of a vtkMRMLMarkupsROINode (world coordinates)."""
    import slicer

    center, size = [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]
    roi_node.GetCenterWorld(center)
    roi_node.GetSizeWorld(size)
    axes = slicer.util.arrayFromVTKMatrix(roi_node.GetObjectToWorldMatrix())
    return box_from_roi_geometry(center, size, axes)


def roi_from_box(box: PhysicalBox, name: str = "", roi_node=None):
    """An axis-aligned ROI node covering ``box`` (a new one unless ``roi_node`` is given)."""
    import slicer

    if roi_node is None:
        roi_node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsROINode", name)
        roi_node.CreateDefaultDisplayNodes()
    center, size = roi_geometry_from_box(box)
    roi_node.SetCenterWorld([float(v) for v in center])
    roi_node.SetSizeWorld([float(v) for v in size])
    return roi_node
