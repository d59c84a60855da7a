"""Write a file under a temporary name beside it, then rename: a reader never sees half a file.

The temporary file lives in the target's folder, so the final ``os.replace`` is a rename on one
file system (atomic on POSIX and Windows) and a crash leaves at most a hidden ``.partial`` file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

PARTIAL = ".partial"  # marks write_atomically's temporary names: .<name>.<random>.partial<suffix>


def write_atomically(path: Path, write: Callable[[Path], object], suffix: str = "") -> Path:
    """Call ``write(temporary_path)``, flush it to disk, then move it onto ``path``.

    ``suffix`` ends the temporary name, for writers that pick the format from the extension.
    On any error the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=f"{PARTIAL}{suffix}"
    )
    os.close(handle)
    temporary = Path(name)
    try:
        write(temporary)
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def remove_leftovers(folder: Path, older_than_s: float = 0.0) -> None:
    """Delete the temporary files that writers killed in mid-write left in ``folder`` (not in
    its subfolders). The files they were to replace are whole: ``os.replace`` never ran.

    Where other processes write into the same folder (a shared annotation store), only files
    last written ``older_than_s`` ago or more go: a younger one may be a save on its way."""
    cutoff = time.time() - older_than_s
    for stale in Path(folder).glob(f".*{PARTIAL}*"):
        with contextlib.suppress(FileNotFoundError):  # another process removed it first
            if stale.is_file() and stale.stat().st_mtime <= cutoff:
                stale.unlink()
