"""NIfTI and NRRD (and MetaImage) files <-> Volume, through SimpleITK, which converts to LPS."""

from __future__ import annotations

from pathlib import Path

import SimpleITK as sitk

from deepliver.errors import DeepLiverError
from deepliver.io.atomic import write_atomically
from deepliver.volume import Volume

SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
# Single-file formats only, so the atomic rename moves the whole image.
WRITE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")


def is_image_file(path: Path) -> bool:
    return Path(path).name.lower().endswith(SUFFIXES)


def read_image(path: Path) -> Volume:
    path = Path(path)
    if not path.is_file():
        raise DeepLiverError(f"{path}: no such file")
    if not is_image_file(path):
        raise DeepLiverError(f"{path}: not a NIfTI or NRRD file (expected one of {SUFFIXES})")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise DeepLiverError(f"{path}: cannot be read ({_first_line(error)})") from None
    try:
        return Volume.from_sitk(image)
    except ValueError as error:
        raise DeepLiverError(f"{path}: {error}") from None


def write_image(volume: Volume, path: Path) -> Path:
    """Write atomically: a crash mid-write never leaves a half file under the final name."""
    path = Path(path)
    suffix = next((s for s in WRITE_SUFFIXES if path.name.lower().endswith(s)), None)
    if suffix is None:
        raise DeepLiverError(f"{path}: unsupported output type (use one of {WRITE_SUFFIXES})")
    try:
        write_atomically(
            path, lambda partial: sitk.WriteImage(volume.to_sitk(), str(partial), True), suffix
        )
    except RuntimeError as error:
        raise DeepLiverError(f"{path}: cannot be written ({_first_line(error)})") from None
    return path


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
