"""Tumor detectors: 3D lesion recall and false positives per scan on held-out phantoms, per-slice
AP at IoU 0.5, and detection time on a 512 x 512 x 200 series.

    python bench/bench_detect.py [--cases 20] [--size 256 256 96] [--skip-speed]

Phantoms with seeds 0..N-1 (never used in training). The detectors look where the bundled unet2d
cascade looked for tumors (its coarse liver and tumors, as in `deepliver segment --detector`).
Lesions are reported at each card's operating point (``lesion_score``, chosen on validation
phantoms, after training or by `deepliver models operating-point`, as the lowest score with at
most one false positive per scan). A true lesion is found when a 3D box overlaps its box with
IoU >= 0.3 (one to one); a box that finds no lesion of any size is a false positive. Recall is
over lesions >= 10 mm (longest axial diameter), and per band of that diameter. Per-slice AP:
every slice with a lesion and every third other slice of the true liver crop, on the detector's
grid.

Reference rows, same scans and matching: the boxes of the lesions the segmentation cascade
(``tumor-unet2d``) writes into its lesion table, every one of them; and those whose
``mean_probability`` (the tumor model's mean over the lesion, a column of the table) reaches
SEGMENTATION_POINT, chosen as the detectors' points are: ``choose_operating_point`` (at most
one false positive per scan) over the same lesions and matching on validation phantoms 100-139.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

TARGETS = {"fasterrcnn": 0.90, "yolo": 0.80}
MAX_FP_PER_SCAN = {"fasterrcnn": 1.0, "yolo": None}
SPEED_TARGET_S = 20.0
SIZE_BANDS = ((10.0, 20.0), (20.0, 30.0), (30.0, 50.0), (50.0, np.inf))  # longest axial, mm
SEGMENTATION_POINT = 0.7487  # mean probability; validation: recall 0.689 (61 lesions), 1.00 FP/scan


def load_detectors(device: str) -> dict:
    from deepliver.errors import DeepLiverError
    from deepliver.models.card import find_model, load_model

    detectors = {}
    for name in TARGETS:
        try:
            detectors[name] = load_model(find_model(f"tumor-{name}"), device)
        except DeepLiverError as error:
            print(f"{name}: not bundled ({error})")
    return detectors


def accuracy(detectors: dict, cases: int, size, device: str) -> tuple[dict, dict, dict]:
    """Per detector its rates and per-slice AP50; and the reference rows' rates (all of the
    segmentation's lesions, and those at SEGMENTATION_POINT)."""
    from deepliver.detection.detect import reporting_score
    from deepliver.detection.operating_point import scan_case, scored_scan, tally
    from deepliver.detection.training import DetectionTask
    from deepliver.inference.cascade import load_cascade, segment
    from deepliver.inference.lesions import lesion_table
    from deepliver.phantom import PhantomSpec, make_phantom
    from deepliver.training import data

    cascade = load_cascade("unet2d", device)
    scans = {name: [] for name in detectors}
    reference, scored = [], []
    for seed in range(cases):
        phantom = make_phantom(PhantomSpec(seed=seed, size=tuple(size)))
        result = segment(phantom.ct, cascade)
        labels = result.labels
        for name, (network, card) in detectors.items():
            scan = scan_case(phantom.ct, phantom.labels, result.tumor_search, network, card, device)
            scans[name].append((scan, reporting_score(card)))
            found, big, false_positives = tally([scan], reporting_score(card))
            print(
                f"  seed {seed:2d} {name:10s}: {found}/{big}"
                f" lesions >= 10 mm found, {false_positives} false positive(s)",
                flush=True,
            )
        lesions = lesion_table(labels, phantom.ct, result.tumor_probability)
        boxes = [[*x.box_min_lps, *x.box_max_lps] for x in lesions]
        scores = [x.mean_probability for x in lesions]
        segmented = scored_scan(boxes, scores, phantom.labels, phantom.ct)
        reference.append((segmented, 0.0))
        scored.append((segmented, SEGMENTATION_POINT))
    results = {name: _rates(scans[name]) for name in detectors}
    for name, (network, card) in detectors.items():
        task = DetectionTask(card, 8, device)
        cached = []
        for seed in range(cases):
            arrays = data.prepare_case(
                seed, "detection", card.spacing_mm, card.hu_window, tuple(size)
            )
            cached.append(data.Case(seed, foreground=np.zeros((0, 3), np.int32), **arrays))
        results[name]["ap50"] = task.validate(network, cached)[0]
    return results, _rates(reference), _rates(scored)


def _rates(scans: list) -> dict:
    """Recall, lesions counted, FP per scan, and recall per band of lesion size, for
    (scan, operating point) pairs."""
    from deepliver.detection.operating_point import tally

    found, counted, false_positives = np.sum([tally([s], t) for s, t in scans], axis=0)
    matched = np.concatenate([s.matched(t)[0] for s, t in scans])
    diameters = np.concatenate([s.diameters_mm for s, _ in scans])
    bands = {}
    for low, high in SIZE_BANDS:
        inside = (diameters >= low) & (diameters < high)
        bands[(low, high)] = (int(matched[inside].sum()), int(inside.sum()))
    return {
        "recall": found / counted if counted else float("nan"),
        "lesions": int(counted),
        "fp_per_scan": false_positives / max(1, len(scans)),
        "by_size": bands,
    }


def _by_size(rates: dict) -> str:
    parts = [
        f"{low:g}-{high:g} mm {found}/{count}"
        if high < np.inf
        else f">= {low:g} mm {found}/{count}"
        for (low, high), (found, count) in rates["by_size"].items()
    ]
    return f"{'':12s} found by size: " + ", ".join(parts)


def speed(detectors: dict, device: str) -> dict:
    """Detection alone (liver given) on a 512 x 512 x 200 phantom, best of 2."""
    from deepliver.detection.detect import detect_lesions
    from deepliver.phantom import PhantomSpec, make_phantom

    phantom = make_phantom(PhantomSpec(seed=7, size=(512, 512, 200)))
    liver = phantom.labels.array > 0
    seconds = {}
    for name, (network, card) in detectors.items():
        runs = []
        for _ in range(2):
            start = time.perf_counter()
            detect_lesions(phantom.ct, liver, network, card, device)
            runs.append(time.perf_counter() - start)
        seconds[name] = min(runs)
    return seconds


def main() -> None:
    from deepliver.detection.detect import reporting_score
    from deepliver.inference.cascade import resolve_device

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--size", type=int, nargs=3, default=(256, 256, 96))
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()
    device = resolve_device("auto")
    detectors = load_detectors(device)
    if not detectors:
        print("no bundled detector: nothing to measure")
        return
    results, reference, scored = accuracy(detectors, args.cases, args.size, device)
    times = {} if args.skip_speed else speed(detectors, device)
    size = " x ".join(map(str, args.size))
    print(f"\n{args.cases} held-out phantoms ({size}), seeds 0-{args.cases - 1}, on {device}")
    print("detector     recall>=10mm  target  FP/scan  per-slice AP50  512x512x200 s  (<= 20)")
    for name, r in results.items():
        card = detectors[name][1]
        recall_ok = r["recall"] >= TARGETS[name]
        fp_limit = MAX_FP_PER_SCAN[name]
        fp_ok = fp_limit is None or r["fp_per_scan"] <= fp_limit
        seconds = times.get(name)
        print(
            f"{name:12s} {r['recall']:6.3f} ({r['lesions']:3d})  {TARGETS[name]:.2f}   "
            f"{r['fp_per_scan']:6.2f}   {r['ap50']:8.3f}        "
            + (f"{seconds:6.1f}" if seconds is not None else "   -  ")
            + f"   {'PASS' if recall_ok and fp_ok else 'FAIL'} accuracy"
            + ("" if seconds is None else f", {'PASS' if seconds <= SPEED_TARGET_S else 'FAIL'}")
        )
        point = "default" if card.lesion_score is None else "validation"
        print(
            f"{'':12s} {card.name} {card.version}: lesion score >= "
            f"{reporting_score(card):.3f} "
            f"({point} operating point"
            + (
                f": recall {card.metrics['validation_lesion_recall_10mm']:.3f}, "
                f"{card.metrics['validation_fp_per_scan']:.2f} FP/scan on "
                f"{card.metrics['validation_scans']} validation phantoms)"
                if "validation_fp_per_scan" in card.metrics
                else ")"
            )
        )
        print(_by_size(r))
    print(
        f"{'reference':12s} {reference['recall']:6.3f} ({reference['lesions']:3d})          "
        f"{reference['fp_per_scan']:6.2f}"
        "   (every lesion of the cascade's lesion table as a box; no score, no operating point)"
    )
    print(_by_size(reference))
    print(
        f"{'seg scored':12s} {scored['recall']:6.3f} ({scored['lesions']:3d})          "
        f"{scored['fp_per_scan']:6.2f}   (the lesions whose mean probability is >= "
        f"{SEGMENTATION_POINT}, a validation operating point)"
    )
    print(_by_size(scored))


if __name__ == "__main__":
    main()
