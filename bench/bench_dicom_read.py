"""Benchmark: deepliver's DICOM series reader against a plain pydicom loop and SimpleITK.

Writes a synthetic uncompressed CT series (default 512x512x300) to a temporary folder, warms the
page cache, then times each reader in its own subprocess (best of N) and measures its peak extra
memory (peak RSS minus RSS after imports). Targets: deepliver at least as fast as the faster
baseline, and peak extra memory at most 1.5x the int16 volume.

    python bench/bench_dicom_read.py [--slices 300] [--size 512] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MEMORY_TARGET = 1.5
METHODS = ("deepliver", "pydicom", "simpleitk")


# --- worker side (one method per process) -------------------------------------------------------


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS so import spikes do not count (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _reader(method: str):
    if method == "deepliver":
        from deepliver.io.dicom_read import read_series

        return lambda folder: read_series(folder)[0].array

    if method == "pydicom":
        import numpy as np
        import pydicom

        def read(folder):
            datasets = [pydicom.dcmread(path) for path in sorted(Path(folder).iterdir())]
            datasets.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
            return np.stack([ds.pixel_array for ds in datasets])

        return read

    if method == "simpleitk":
        import SimpleITK as sitk

        def read(folder):
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
            image = reader.Execute()
            return sitk.GetArrayViewFromImage(image), image  # keep the image alive, no copy

        return read
    raise ValueError(method)


def worker(method: str, folder: str, repeat: int) -> None:
    import numpy  # noqa: F401 - imported before the baseline RSS is taken

    read = _reader(method)
    reset = _reset_peak()
    baseline_kb = _status_kb("VmRSS")
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = read(folder)
        times.append(time.perf_counter() - start)
        del result
    peak_kb = _status_kb("VmHWM")
    print(
        json.dumps(
            {"seconds": min(times), "extra_mb": (peak_kb - baseline_kb) / 1024, "reset": reset}
        )
    )


# --- driver side ------------------------------------------------------------------------------


def write_series(folder: Path, slices: int, size: int) -> None:
    import numpy as np

    from deepliver.io.dicom_write import write_ct_series
    from deepliver.volume import Volume

    rng = np.random.default_rng(0)
    block = 8
    coarse = rng.integers(-1024, 2000, size=(slices, size // block, size // block), dtype=np.int16)
    array = np.repeat(np.repeat(coarse, block, axis=1), block, axis=2)
    array += rng.integers(-20, 21, size=array.shape, dtype=np.int16)  # noise
    np.clip(array, -1024, 3071, out=array)
    volume = Volume.from_array(array, origin=(-180.0, -200.0, -400.0), spacing=(0.7, 0.7, 1.25))
    write_ct_series(volume, folder, description="benchmark")


def run_worker(method: str, folder: Path, repeat: int) -> dict:
    command = [sys.executable, __file__, "--worker", method, str(folder), "--repeat", str(repeat)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{method} worker failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512, help="rows = columns")
    parser.add_argument("--repeat", type=int, default=3, help="timed reads per method (best)")
    parser.add_argument("--worker", nargs=2, metavar=("METHOD", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], args.repeat)
        return

    volume_mb = args.slices * args.size * args.size * 2 / 2**20
    with tempfile.TemporaryDirectory(prefix="deepliver-bench-") as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        write_series(folder, args.slices, args.size)
        write_s = time.perf_counter() - start
        for path in folder.iterdir():  # warm the page cache
            path.read_bytes()
        print(
            f"series {args.size}x{args.size}x{args.slices}, int16 volume {volume_mb:.1f} MB, "
            f"written in {write_s:.2f} s; best of {args.repeat}; python {sys.version.split()[0]}"
        )
        results = {method: run_worker(method, folder, args.repeat) for method in METHODS}

    print(f"{'reader':<10} {'seconds':>8} {'slices/s':>9} {'peak MB':>8} {'x int16':>8}")
    for method, result in results.items():
        print(
            f"{method:<10} {result['seconds']:>8.3f} {args.slices / result['seconds']:>9.0f} "
            f"{result['extra_mb']:>8.1f} {result['extra_mb'] / volume_mb:>8.2f}"
        )
    ours = results["deepliver"]
    for method in METHODS[1:]:
        print(f"deepliver vs {method}: {results[method]['seconds'] / ours['seconds']:.2f}x faster")
    fastest = min(results[m]["seconds"] for m in METHODS[1:])
    speed_ok = ours["seconds"] <= fastest
    memory_ok = ours["extra_mb"] <= MEMORY_TARGET * volume_mb
    print(f"speed  (<= fastest baseline {fastest:.3f} s): {'PASS' if speed_ok else 'FAIL'}")
    print(f"memory (<= {MEMORY_TARGET}x int16 volume): {'PASS' if memory_ok else 'FAIL'}")
    if not all(r["reset"] for r in results.values()):
        print("note: could not reset peak RSS after imports; memory may include import spikes")
    sys.exit(0 if speed_ok and memory_ok else 1)


if __name__ == "__main__":
    main()
