"""Volume nodes <-> :class:`deepliver.volume.Volume`.

Slicer stores a volume's voxels as vtkImageData, which ``slicer.util.arrayFromVolume`` shows in
(k, j, i) order: the (z, y, x) order of :class:`~deepliver.volume.Volume`, so the array needs no
transposing. The geometry is the node's IJK-to-RAS matrix; the one LPS/RAS flip is
:meth:`Grid.from_ijk_to_ras` / :meth:`Grid.ijk_to_ras`.
"""

from __future__ import annotations

import numpy as np

from deepliver.volume import Grid, Volume


def grid_from_matrix(ijk_to_ras, shape_kji) -> Grid:
    """The LPS grid of a node whose IJK-to-RAS matrix and (k, j, i) array shape are given."""
    return Grid.from_ijk_to_ras(np.asarray(ijk_to_ras, dtype=np.float64), tuple(shape_kji))


def matrix_from_grid(grid: Grid) -> np.ndarray:
    """The 4x4 IJK-to-RAS matrix to give a node for ``grid``."""
    return grid.ijk_to_ras()


# --- Slicer ------------------------------------------------------------------------------


def ijk_to_ras(node) -> np.ndarray:
    """A volume node's IJK-to-RAS matrix as a 4x4 numpy array."""
    import slicer
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def volume_from_node(node, copy: bool = True) -> Volume:
    """A scalar or label map volume node as a Volume (voxels copied unless ``copy=False``)."""
    import slicer

    if node is None or node.GetImageData() is None:
        raise ValueError("the volume node has no image data")
    array = slicer.util.arrayFromVolume(node)
    if array.ndim != 3:
        raise ValueError(f"expected a scalar 3D volume, got an array of shape {array.shape}")
    grid = grid_from_matrix(ijk_to_ras(node), array.shape)
    return Volume(np.array(array) if copy else array, grid)


def update_node_from_volume(node, volume: Volume) -> None:
    """Replace a volume node's voxels and geometry with those of ``volume``."""
    import slicer

    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(matrix_from_grid(volume.grid)))
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(volume.array))


def node_from_volume(volume: Volume, name: str = "", label_map: bool = False):
    """A new scalar (or label map) volume node in the scene holding ``volume``."""
    import slicer

    class_name = "vtkMRMLLabelMapVolumeNode" if label_map else "vtkMRMLScalarVolumeNode"
    return slicer.util.addVolumeFromArray(
        np.ascontiguousarray(volume.array),
        ijkToRAS=matrix_from_grid(volume.grid),
        name=name,
        nodeClassName=class_name,
    )
