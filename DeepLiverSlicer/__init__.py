"""The Slicer glue shared by the three DeepLiver modules: MRML nodes <-> ``deepliver`` objects.

One module per concern (volumes, segmentations, terminology, markups, DICOM identity,
dependencies, the background runner). Each keeps the work that is not a Slicer call in plain
functions that CI tests without Slicer; ``slicer``, ``qt`` and ``vtk`` are imported only inside
the functions that need them, so every module here imports outside Slicer.
"""

from __future__ import annotations

import sys
from pathlib import Path

RESOURCES = Path(__file__).resolve().parent / "Resources"

# Where the modules remember the annotation store folder (QSettings): Review and Inference
# share it, so a model revision lands in the store the reviewer opens.
STORE_FOLDER_SETTING = "DeepLiver/StoreFolder"

# The oldest Slicer the core runs in: Slicer 5.12 brings Python 3.12 and pydicom 3.0; Slicer 5.10
# has pydicom 2.4 (the core's DICOM writer needs 3) and Slicer 5.8 has Python 3.9.
MIN_SLICER = "5.12"
MIN_PYTHON = (3, 11)  # pyproject.toml's requires-python
MIN_PYDICOM = 3


def environment_problem(python_version=None, pydicom_version: str | None = None) -> str | None:
    """Why DeepLiver cannot run in this Slicer (a sentence for the user), or None."""
    python = tuple(sys.version_info if python_version is None else python_version)
    if pydicom_version is None:
        pydicom_version = _installed_pydicom()
    python_ok = python[:2] >= MIN_PYTHON
    pydicom_ok = pydicom_version is None or int(pydicom_version.split(".")[0]) >= MIN_PYDICOM
    if python_ok and pydicom_ok:
        return None
    have = ".".join(str(v) for v in python[:3])
    return (
        f"DeepLiver needs Slicer {MIN_SLICER} or newer (Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]}+, "
        f"pydicom {MIN_PYDICOM}+); this Slicer runs Python {have} with pydicom {pydicom_version}."
    )


def _installed_pydicom() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pydicom")
    except PackageNotFoundError:
        return None  # installed on first use, at the version DeepLiver asks for
