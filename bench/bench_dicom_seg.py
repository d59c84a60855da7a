"""Time and peak memory of write_dicom_seg for a 512 x 512 x 300 series whose liver holds 30
boxes of tumor (some touch, so about 30 segments with the liver): now (the masks handed to
highdicom as a bool view) against before (the masks copied to uint8 first, as the writer did
until 2026-11-28), side by side.

Run: python bench/bench_dicom_seg.py [lesions]
"""

from __future__ import annotations

import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np


def with_lesions(labels: np.ndarray, count: int) -> np.ndarray:
    """The liver with ``count`` boxes of tumor (5 x 12 x 12 voxels) at random liver voxels."""
    labels = (labels > 0).astype(np.uint8)
    z, y, x = np.nonzero(labels)
    for n in np.random.default_rng(0).choice(len(z), count, replace=False):
        k, j, i = z[n], y[n], x[n]
        labels[max(0, k - 2) : k + 3, max(0, j - 6) : j + 6, max(0, i - 6) : i + 6] = 2
    return labels


def timed(write) -> tuple[float, float]:
    """(seconds, peak MB that Python and numpy allocated while writing)."""
    tracemalloc.start()
    start = time.perf_counter()
    write()
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return seconds, peak


def main() -> None:
    from deepliver.annotation.segmentation import Segmentation
    from deepliver.io import dicom_seg
    from deepliver.io.dicom_write import write_ct_series
    from deepliver.phantom import PhantomSpec, make_phantom

    count = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    phantom = make_phantom(PhantomSpec(seed=3, size=(512, 512, 300)))
    labels = phantom.labels.with_array(with_lesions(phantom.labels.array, count))
    segmentation = Segmentation.from_label_map(labels)
    print(f"512 x 512 x 300 phantom, {len(segmentation.segments)} segments")
    with tempfile.TemporaryDirectory() as folder:
        dicom = Path(folder) / "dicom"
        identity = write_ct_series(phantom.ct, dicom, uid_entropy="bench-dicom-seg")

        def write(name: str):
            return lambda: dicom_seg.write_dicom_seg(
                segmentation, dicom, Path(folder) / name, series_identity=identity
            )

        now = timed(write("now.dcm"))
        frames = dicom_seg._frames
        dicom_seg._frames = lambda masks: frames(masks).astype(np.uint8)  # the copy made before
        try:
            before = timed(write("before.dcm"))
        finally:
            dicom_seg._frames = frames
    print(f"{'':8s} {'seconds':>8s} {'peak MB':>8s}")
    for name, (seconds, peak) in (("before", before), ("now", now)):
        print(f"{name:8s} {seconds:8.1f} {peak:8.0f}")
    print(f"now uses {before[1] / now[1]:.1f}x less memory, {before[0] / now[0]:.1f}x faster")


if __name__ == "__main__":
    main()
