"""A small phantom written as DICOM and read back: the series the store tests annotate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deepliver.annotation.segmentation import Segmentation
from deepliver.io.dicom_read import read_series
from deepliver.io.dicom_write import write_ct_series
from deepliver.io.series_identity import SeriesIdentity
from deepliver.phantom import PhantomSpec, make_phantom
from deepliver.volume import Grid, Volume


@dataclass(frozen=True)
class StoreSeries:
    folder: Path  # the DICOM series
    identity: SeriesIdentity
    grid: Grid
    labels: Volume  # 0 background, 1 liver, 2 tumor on the series grid
    segmentation: Segmentation


def phantom_series(folder: Path, seed: int, description: str = "") -> StoreSeries:
    phantom = make_phantom(PhantomSpec(seed=seed, size=(32, 32, 12), n_tumors=(2, 2)))
    write_ct_series(phantom.ct, folder, description=description, uid_entropy=f"store-{seed}")
    volume, identity = read_series(folder)
    labels = Volume(phantom.labels.array, volume.grid)
    return StoreSeries(folder, identity, volume.grid, labels, Segmentation.from_label_map(labels))


def tumor_box(series: StoreSeries, name: str = "Tumor 1") -> dict:
    """The LPS box (voxel centres) of one segment, as a store box record."""
    import numpy as np

    mask = series.segmentation.mask(name)
    k, j, i = np.nonzero(mask)
    corners = np.array([[i.min(), j.min(), k.min()], [i.max(), j.max(), k.max()]], dtype=float)
    points = series.grid.index_to_physical(corners)
    return {"segment": name, "min": points.min(0).tolist(), "max": points.max(0).tolist()}
