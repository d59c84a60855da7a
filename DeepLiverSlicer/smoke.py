"""The frame's smoke path: a volume through a real background ``deepliver convert`` and back.

Until the segment command lands, "Detect liver/tumor" runs this: the volume is written to a
temporary NRRD with the core, converted by a child ``deepliver convert`` (progress, cancel and
errors as for any command), read back with the core and checked voxel for voxel on its grid.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepliver.errors import DeepLiverError
from deepliver.volume import Volume


@dataclass(frozen=True)
class SmokeRun:
    workdir: Path
    input: Path
    output: Path

    @property
    def command(self) -> tuple[str, list[str]]:
        """The ``deepliver`` command and its arguments."""
        return "convert", [str(self.input), str(self.output)]


def prepare(volume: Volume, parent: str | None = None) -> SmokeRun:
    """Write ``volume`` to a new temporary folder; the run converts it to another NRRD."""
    from deepliver.io.image_files import write_image

    workdir = Path(tempfile.mkdtemp(prefix="DeepLiver-", dir=parent))
    run = SmokeRun(workdir, workdir / "input.nrrd", workdir / "output.nrrd")
    write_image(volume, run.input)
    return run


def check(run: SmokeRun, volume: Volume) -> str:
    """Read the child's output back: same grid, same voxels; returns a line for the user."""
    from deepliver.io.image_files import read_image

    if not run.output.is_file():
        raise DeepLiverError(f"the background command wrote no {run.output.name}")
    back = read_image(run.output)
    volume.require_same_grid(back, "the background command's output")
    if not np.array_equal(back.array, volume.array):
        raise DeepLiverError("the background command's output differs from its input")
    size = " x ".join(str(n) for n in volume.grid.size_ijk)
    return f"Smoke run passed: a background deepliver process read and wrote {size} voxels."


def cleanup(run: SmokeRun) -> None:
    shutil.rmtree(run.workdir, ignore_errors=True)
