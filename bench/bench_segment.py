"""Pre-segmentation: accuracy on held-out phantoms and real CT, speed end to end vs a baseline.

    python bench/bench_segment.py [--cases 20] [--size 256 256 96] [--skip-speed]

Accuracy: phantoms with seeds 0..N-1 (never used in training: training seeds start at 1000),
segmented in-process by the cascade; per-case liver and tumor Dice (mean), and the share of
true lesions >= 10 mm that the result touches. Tumor Dice is also given per contrast phase, as
the phantom draws it: lesions differ most from the liver in some phases and least in others.
Beside them, what the phantoms allow: some tumors and rims are drawn within a few HU of the
liver (isoattenuating), and their labels count all the same (``phantom.visibility``).
Real CT: liver Dice on the Siemens series of ../shared/data/real (liver = label 5 of its label
map), and on its 3-slice GE series (liver mask), when that folder is there.

Speed: a 512 x 512 x 200 phantom written as a DICOM folder, then `deepliver segment` run as a
user runs it (a fresh process, all outputs written), wall time and peak memory. Baseline, in
the same run: MONAI sliding-window inference of a full-resolution 3D U-Net of nnU-Net's
default size (DynUNet, 32..320 features, 128^3 patches, overlap 0.5, random weights) over the
same volume. On a 2-core CPU the whole baseline takes tens of minutes, so it times
``--baseline-windows`` windows and scales by the number of windows the volume needs; the
printout says so.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real"
TARGETS = {"liver": 0.97, "tumor": 0.85, "lesions": 0.95, "real": 0.90, "seconds": 15.0}


def accuracy(cases: int, size: tuple[int, int, int]) -> dict:
    from deepliver.inference.cascade import load_cascade, segment
    from deepliver.inference.lesions import lesion_table
    from deepliver.models.predict import dice
    from deepliver.phantom import PhantomSpec, make_phantom
    from deepliver.phantom.visibility import VISIBLE_CONTRAST_HU, visible_tumor

    models = load_cascade("unet2d", "auto")
    livers, tumors, found, total, missed = [], [], 0, 0, []
    visible_ceiling, against_visible, visible_lesions = [], [], 0
    tumors_by_phase: dict[str, list[float]] = {}
    for seed in range(cases):
        phantom = make_phantom(PhantomSpec(seed=seed, size=size))
        labels = segment(phantom.ct, models).labels.array
        truth = phantom.labels.array
        livers.append(dice(labels > 0, truth > 0))
        visible = visible_tumor(phantom)
        if (truth == 2).any():
            tumors.append(dice(labels == 2, truth == 2))
            tumors_by_phase.setdefault(phantom.phase, []).append(tumors[-1])
            visible_ceiling.append(dice(visible, truth == 2))
            against_visible.append(dice(labels == 2, visible))
        for lesion in lesion_table(phantom.labels, phantom.ct):
            if lesion.longest_axial_diameter_mm < 10:
                continue
            total += 1
            inside = _lesion_mask(phantom.labels.array, phantom.labels.grid, lesion)
            touched = bool((labels[inside] == 2).any())
            found += touched
            visible_lesions += bool(visible[inside].mean() >= 0.5)
            if not touched:
                liver_hu = float(phantom.ct.array[truth == 1].mean())
                in_liver = float((labels[inside] > 0).mean())
                missed.append(
                    f"seed {seed} ({phantom.phase}): {lesion.longest_axial_diameter_mm:.0f} mm, "
                    f"{lesion.mean_hu - liver_hu:+.0f} HU against the liver, "
                    f"{in_liver:.0%} of it inside the liver found"
                )
        print(
            f"  seed {seed:3d} ({phantom.phase}): liver Dice {livers[-1]:.3f}"
            + (f", tumor Dice {tumors[-1]:.3f}" if (truth == 2).any() else ""),
            flush=True,
        )
    return {
        "liver_dice": float(np.mean(livers)),
        "tumor_dice": float(np.mean(tumors)) if tumors else math.nan,
        "tumor_dice_by_phase": {p: (float(np.mean(d)), len(d)) for p, d in tumors_by_phase.items()},
        "lesions_found": found / total if total else math.nan,
        "lesions": total,
        "visible_contrast_hu": VISIBLE_CONTRAST_HU,
        "visible_lesions": visible_lesions,
        "visible_ceiling": float(np.mean(visible_ceiling)) if tumors else math.nan,
        "against_visible": float(np.mean(against_visible)) if tumors else math.nan,
        "missed": missed,
        "models": [card.name + " " + card.version for card in models.cards],
    }


def _lesion_mask(labels: np.ndarray, grid, lesion) -> np.ndarray:
    """The true lesion's own voxels: its 26-connected tumor component holding its centroid."""
    components, _ = ndimage.label(labels == 2, structure=np.ones((3, 3, 3), bool))
    i, j, k = np.round(grid.physical_to_index(lesion.centroid_lps)).astype(int)
    number = components[k, j, i]
    if number == 0:  # a crescent whose centroid falls outside it: take its largest overlap
        box = tuple(slice(0, n) for n in labels.shape)
        number = np.bincount(components[box][components[box] > 0]).argmax()
    return components == number


def real_ct() -> dict[str, float] | None:
    """Liver Dice on the real series: the Siemens one (the target's) and the GE one, 3 slices
    of 1 mm (no target: on the liver model's 5 mm grid they are one slice, seen without its
    neighbours), a second scanner for telling a model's grid from one series' quirks."""
    if not (REAL / "siemens_ct_jpeg2000").is_dir():
        return None
    from deepliver.inference.cascade import load_cascade, segment
    from deepliver.io.dicom_read import read_series
    from deepliver.io.image_files import read_image
    from deepliver.models.predict import dice

    models = load_cascade("unet2d", "auto")
    scores = {}
    for name, series, label_file, liver_label in (
        ("siemens", "siemens_ct_jpeg2000", "siemens_ct_jpeg2000_labels/multilabel.nii.gz", 5),
        ("ge", "ge_ct_3slice", "ge_ct_3slice_labels/liver_seg.nrrd", 1),
    ):
        ct, _ = read_series(REAL / series)
        truth = read_image(REAL / label_file).resampled_onto(ct.grid, label=True)
        scores[name] = dice(segment(ct, models).labels.array > 0, truth.array == liver_label)
    return scores


def speed(folder: Path) -> dict:
    from deepliver.io.dicom_write import write_ct_series
    from deepliver.phantom import PhantomSpec, make_phantom

    phantom = make_phantom(PhantomSpec(seed=3, size=(512, 512, 200)))
    write_ct_series(phantom.ct, folder / "dicom", uid_entropy="bench-segment")
    command = [
        sys.executable,
        "-m",
        "deepliver",
        "segment",
        str(folder / "dicom"),
        "-o",
        str(folder / "out"),
        "--progress",
        "none",
    ]
    subprocess.run(command, check=True, capture_output=True)  # warm the file cache once
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    summary = json.loads((folder / "out" / "summary.json").read_text())
    return {
        "seconds": seconds,
        "peak_mb": peak_mb,
        "stages": summary["timings_s"],
        "shape": phantom.ct.shape,
    }


def baseline(shape: tuple[int, int, int], windows_measured: int) -> dict:
    """nnU-Net-sized full-resolution 3D U-Net, MONAI sliding window, random weights, on the
    device `deepliver segment` picks (``auto``), so both sides run on the same hardware."""
    import torch
    from monai.inferers import SlidingWindowInferer
    from monai.networks.nets import DynUNet

    from deepliver.inference.cascade import resolve_device

    device = resolve_device("auto")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    network = (
        DynUNet(
            spatial_dims=3,
            in_channels=1,
            out_channels=3,
            kernel_size=[3] * 6,
            strides=[1, 2, 2, 2, 2, 2],
            upsample_kernel_size=[2] * 5,
            filters=[32, 64, 128, 256, 320, 320],
        )
        .eval()
        .to(device)
    )
    roi = (128, 128, 128)
    full = [max(n, r) for n, r in zip(shape, roi, strict=True)]
    steps = [math.ceil((n - r) / (r * 0.5)) + 1 for n, r in zip(full, roi, strict=True)]
    windows = int(np.prod(steps))
    # A block that needs exactly `windows_measured` windows along the first axis.
    block = (roi[0] + (windows_measured - 1) * roi[0] // 2, roi[1], roi[2])
    inferer = SlidingWindowInferer(roi_size=roi, sw_batch_size=1, overlap=0.5)
    image = torch.rand((1, 1, *block), device=device)
    with torch.inference_mode():
        if device == "cuda":  # the first window pays for CUDA's start-up: not the baseline's
            network(image[..., : roi[0], :, :])
            torch.cuda.synchronize()
        start = time.perf_counter()
        inferer(image, network)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return {
        "device": device,
        "seconds": seconds / windows_measured * windows,
        "windows": windows,
        "measured": windows_measured,
        "measured_seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--size", type=int, nargs=3, default=(256, 256, 96))
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--baseline-windows", type=int, default=3)
    args = parser.parse_args()

    print(f"accuracy on {args.cases} held-out phantoms ({' x '.join(map(str, args.size))}):")
    scores = accuracy(args.cases, tuple(args.size))
    real = real_ct()
    print(f"models: {', '.join(scores['models'])}")
    print(f"liver Dice (mean)        {scores['liver_dice']:.4f}   target >= {TARGETS['liver']}")
    print(f"tumor Dice (mean)        {scores['tumor_dice']:.4f}   target >= {TARGETS['tumor']}")
    by_phase = sorted(scores["tumor_dice_by_phase"].items())
    print("  by contrast phase: " + ", ".join(f"{p} {d:.3f} ({n})" for p, (d, n) in by_phase))
    print(
        f"lesions >= 10 mm found   {scores['lesions_found']:.3f}   target >= "
        f"{TARGETS['lesions']} ({scores['lesions']} lesions)"
    )
    for line in scores["missed"]:
        print(f"  missed: {line}")
    contrast = scores["visible_contrast_hu"]
    print(
        f"what these phantoms allow (tumor tissue drawn >= {contrast:.0f} HU from the liver "
        "counts as visible; the rest is isoattenuating):"
    )
    print(
        f"  tumor Dice of exactly the visible tumor  {scores['visible_ceiling']:.4f}   "
        f"(ours against the visible tumor: {scores['against_visible']:.4f})"
    )
    print(
        f"  lesions >= 10 mm at least half visible   {scores['visible_lesions']} of "
        f"{scores['lesions']} = {scores['visible_lesions'] / max(1, scores['lesions']):.3f}"
    )
    if real is None:
        print("real CT: ../shared/data/real not found, skipped")
    else:
        print(f"real CT liver Dice       {real['siemens']:.3f}   target >= {TARGETS['real']}")
        print(f"  GE, 3 slices of 1 mm   {real['ge']:.3f}   (no target: one slice on a 5 mm grid)")
    if args.skip_speed:
        return
    with tempfile.TemporaryDirectory(prefix="bench-segment-") as folder:
        ours = speed(Path(folder))
    base = baseline(ours["shape"], args.baseline_windows)
    print(f"\nspeed, {' x '.join(map(str, ours['shape'][::-1]))} DICOM folder -> all outputs:")
    print(
        f"deepliver segment        {ours['seconds']:.1f} s, peak {ours['peak_mb']:.0f} MB   "
        f"target <= {TARGETS['seconds']:.0f} s, <= 3072 MB"
    )
    print("  stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in ours["stages"].items()))
    outside = ours["seconds"] - sum(ours["stages"].values())
    print(f"  outside the stages (Python start, imports, device start-up): {outside:.1f} s")
    print(
        f"baseline (nnU-Net-size 3D U-Net, sliding window, {base['device']}) "
        f"{base['seconds']:.1f} s "
        f"(estimated: {base['measured']} of {base['windows']} windows took "
        f"{base['measured_seconds']:.1f} s)"
    )
    print(
        f"deepliver vs baseline    {base['seconds'] / ours['seconds']:.1f}x faster   target >= 4x"
    )


if __name__ == "__main__":
    main()
