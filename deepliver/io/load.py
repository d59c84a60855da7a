"""One entry point for any input a user may point at: a DICOM folder or file, NIfTI, NRRD."""

from __future__ import annotations

from pathlib import Path

from deepliver.annotation.segmentation import Segmentation
from deepliver.errors import DeepLiverError
from deepliver.io.dicom_read import read_series
from deepliver.io.image_files import is_image_file, read_image
from deepliver.io.series_identity import SeriesIdentity
from deepliver.progress import Progress
from deepliver.volume import Volume


def load_volume(
    path: Path,
    series_uid: str | None = None,
    allow_gaps: bool = False,
    progress: Progress | None = None,
) -> tuple[Volume, SeriesIdentity | None]:
    """The volume at ``path`` and, for DICOM, the identity of its series."""
    path = Path(path)
    if not path.exists():
        raise DeepLiverError(f"{path}: no such file or folder")
    if is_image_file(path):
        if series_uid:
            raise DeepLiverError(f"{path}: --series applies to DICOM folders, not image files")
        return read_image(path), None
    return read_series(path, series_uid, allow_gaps, progress)


def load_segmentation(path: Path, source_folder: Path | None = None) -> Segmentation:
    """Labels from a .seg.nrrd, a DICOM SEG (placed on ``source_folder``'s series when given)
    or a NIfTI/NRRD label map (0 background, 1 liver, 2 tumor; one segment per lesion)."""
    path = Path(path)
    if not path.is_file():
        raise DeepLiverError(f"{path}: no such file")
    name = path.name.lower()
    if name.endswith(".seg.nrrd"):
        from deepliver.io.seg_nrrd import read_seg_nrrd

        return read_seg_nrrd(path)
    if is_image_file(path):
        labels = read_image(path)
        try:
            return Segmentation.from_label_map(labels)
        except DeepLiverError as error:  # a label value no structure has: say which file
            raise DeepLiverError(f"{path}: {error}") from None
    from deepliver.io.dicom_seg import read_dicom_seg

    return read_dicom_seg(path, source_folder)
