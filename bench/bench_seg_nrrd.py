"""Time and size of write_seg_nrrd on a 512 x 512 x 200 phantom segmentation (liver + 4 tumors):
before (each segment through slicerio.add_segment, gzip 9) against now (layers laid out from the
masks' bounding boxes), then the new writer at gzip levels 1, 6 and 9.

Run: python bench/bench_seg_nrrd.py [seed]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_before(segmentation, path: Path) -> Path:
    """The writer as it was: slicerio.add_segment per segment, slicerio's default gzip level."""
    import slicerio
    from slicerio.segmentation import terminology_entry_from_string

    from deepliver.annotation.terminology import terminology_entry
    from deepliver.io.atomic import write_atomically

    grid = segmentation.grid
    data = slicerio.create_segmentation(grid.size_ijk, grid.ijk_to_lps(), dtype="uint8")
    data["containedRepresentationNames"] = ["Binary labelmap"]
    for number, (segment, mask) in enumerate(
        zip(segmentation.segments, segmentation.masks, strict=True), start=1
    ):
        fields = {
            "id": f"Segment_{number}",
            "name": segment.name,
            "color": [round(c / 255.0, 6) for c in segment.display_color],
            "terminology": terminology_entry_from_string(terminology_entry(segment.structure)),
        }
        slicerio.add_segment(data, mask.transpose(2, 1, 0), fields)
    return write_atomically(path, lambda p: slicerio.write_segmentation(str(p), data), ".nrrd")


def main() -> None:
    from deepliver.annotation.segmentation import Segmentation
    from deepliver.io import seg_nrrd
    from deepliver.phantom import PhantomSpec, make_phantom

    seed = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    phantom = make_phantom(PhantomSpec(seed=seed, size=(512, 512, 200), n_tumors=(4, 4)))
    segmentation = Segmentation.from_label_map(phantom.labels)
    voxels = segmentation.masks.sum(axis=(1, 2, 3))
    print(
        f"512 x 512 x 200 phantom seed {seed}: "
        + ", ".join(
            f"{s.name} {n} voxels" for s, n in zip(segmentation.segments, voxels, strict=True)
        )
    )
    level = seg_nrrd.GZIP_LEVEL
    with tempfile.TemporaryDirectory() as folder:
        before, now = Path(folder) / "before.seg.nrrd", Path(folder) / "now.seg.nrrd"
        cases = [
            ("before (add_segment, gzip 9)", lambda: write_before(segmentation, before), 1),
            (f"now (gzip {level})", lambda: seg_nrrd.write_seg_nrrd(segmentation, now), 3),
        ]
        rows = [
            (name, _timed(step, repeats), path.stat().st_size)
            for (name, step, repeats), path in zip(cases, (before, now), strict=True)
        ]
        back = [seg_nrrd.read_seg_nrrd(p) for p in (before, now)]
        identical = all(
            b.segments == segmentation.segments and np.array_equal(b.masks, segmentation.masks)
            for b in back
        )
        for other in (1, 6, 9):
            seg_nrrd.GZIP_LEVEL = other
            path = Path(folder) / f"level{other}.seg.nrrd"
            seconds = _timed(lambda p=path: seg_nrrd.write_seg_nrrd(segmentation, p), 3)
            rows.append((f"now, gzip level {other}", seconds, path.stat().st_size))
        seg_nrrd.GZIP_LEVEL = level
    print(f"{'writer':32s} {'seconds':>8s} {'file KiB':>9s}")
    for name, seconds, size in rows:
        print(f"{name:32s} {seconds:8.3f} {size / 1024:9.0f}")
    print(f"speed-up {rows[0][1] / rows[1][1]:.0f}x; both files read back exactly: {identical}")


def _timed(step, repeats: int) -> float:
    """Best wall time of ``repeats`` runs."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)
    return best


if __name__ == "__main__":
    main()
