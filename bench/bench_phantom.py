"""Time and peak memory of make_phantom at clinical size (512 x 512 x 200), axial and oblique.

Run: python bench/bench_phantom.py  (each case runs in a fresh process so peaks do not mix)
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

CASES = [("axial", seed) for seed in (0, 1, 2)] + [("oblique", seed) for seed in (0, 1)]


def run_case(orientation: str, seed: int) -> dict:
    from deepliver.phantom import PhantomSpec, make_phantom

    start = time.perf_counter()
    phantom = make_phantom(PhantomSpec(seed=seed, size=(512, 512, 200), orientation=orientation))
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    liver_ml = float((phantom.labels.array > 0).sum() * phantom.ct.spacing.prod() / 1000)
    return {
        "orientation": orientation,
        "seed": seed,
        "seconds": round(seconds, 2),
        "peak_MiB": round(peak_mib),
        "phase": phantom.phase,
        "liver_mL": round(liver_ml),
        "spacing": [round(float(s), 3) for s in phantom.ct.spacing],
    }


def main() -> None:
    if len(sys.argv) == 3:
        print(json.dumps(run_case(sys.argv[1], int(sys.argv[2]))))
        return
    print("512 x 512 x 200 phantoms (each in its own process)")
    for orientation, seed in CASES:
        result = subprocess.run(
            [sys.executable, __file__, orientation, str(seed)],
            capture_output=True,
            text=True,
            check=True,
        )
        row = json.loads(result.stdout)
        print(
            f"{row['orientation']:8s} seed {row['seed']}: {row['seconds']:5.2f} s, "
            f"peak {row['peak_MiB']:5d} MiB, {row['phase']:8s} liver {row['liver_mL']} mL, "
            f"spacing {row['spacing']}"
        )


if __name__ == "__main__":
    main()
