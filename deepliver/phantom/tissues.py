"""Tissues of the phantom and their attenuation (HU) per contrast phase.

Ranges follow shared/docs/ct-facts.md, widened a little where the real series in
shared/data/real disagreed (its portal-phase liver sits at 93 HU, its spleen at 80 HU), so a
model trained on the phantom sees the values it will meet.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

PHASES = ("native", "arterial", "portal")

# Tumor tissues get ids from here on, two per tumor (rim, core).
FIRST_TUMOR_ID = 64
MAX_TUMORS = (256 - FIRST_TUMOR_ID) // 2


class Tissue(IntEnum):
    """Ids painted into the tissue map; the HU of each comes from a per-phantom palette."""

    AIR = 0
    LUNG = 1
    FAT = 2
    SKIN = 3
    MUSCLE = 4
    LIVER = 5
    SPLEEN = 6
    SPLEEN_ALT = 7  # the other band of the arterial-phase "zebra" spleen
    KIDNEY_CORTEX = 8
    KIDNEY_MEDULLA = 9
    AORTA = 10
    IVC = 11
    PORTAL_VEIN = 12
    HEPATIC_VEIN = 13
    HEART_BLOOD = 14
    MYOCARDIUM = 15
    BILE = 16
    GUT_FLUID = 17
    GUT_GAS = 18
    GUT_WALL = 19
    CANCELLOUS_BONE = 20
    CORTICAL_BONE = 21
    DISC = 22
    CSF = 23
    PANCREAS = 24
    TABLE = 25


_SAME = object()

# (native, arterial, portal) ranges; _SAME repeats the native range.
HU_RANGES: dict[Tissue, tuple] = {
    Tissue.AIR: ((-1010, -990), _SAME, _SAME),
    Tissue.LUNG: ((-900, -750), _SAME, _SAME),
    Tissue.FAT: ((-120, -80), _SAME, _SAME),
    Tissue.SKIN: ((10, 50), _SAME, _SAME),
    Tissue.MUSCLE: ((35, 55), (45, 65), (50, 70)),
    Tissue.LIVER: ((48, 65), (62, 88), (88, 130)),
    Tissue.SPLEEN: ((40, 52), (80, 150), (80, 130)),
    Tissue.SPLEEN_ALT: ((40, 52), (80, 150), (80, 130)),
    Tissue.KIDNEY_CORTEX: ((30, 40), (150, 250), (140, 190)),
    Tissue.KIDNEY_MEDULLA: ((28, 38), (60, 110), (120, 170)),
    Tissue.AORTA: ((35, 50), (200, 380), (130, 200)),
    Tissue.IVC: ((35, 50), (60, 110), (110, 160)),
    Tissue.PORTAL_VEIN: ((35, 50), (60, 120), (140, 200)),
    Tissue.HEPATIC_VEIN: ((35, 50), (35, 60), (130, 190)),
    Tissue.HEART_BLOOD: ((35, 50), (180, 350), (120, 180)),
    Tissue.MYOCARDIUM: ((35, 55), (80, 120), (80, 110)),
    Tissue.BILE: ((0, 20), _SAME, _SAME),
    Tissue.GUT_FLUID: ((0, 30), _SAME, _SAME),
    Tissue.GUT_GAS: ((-1000, -950), _SAME, _SAME),
    Tissue.GUT_WALL: ((30, 45), (60, 100), (70, 110)),
    Tissue.CANCELLOUS_BONE: ((150, 300), _SAME, _SAME),
    Tissue.CORTICAL_BONE: ((600, 1300), _SAME, _SAME),
    Tissue.DISC: ((70, 110), _SAME, _SAME),
    Tissue.CSF: ((0, 25), _SAME, _SAME),
    Tissue.PANCREAS: ((40, 50), (100, 130), (80, 110)),
    Tissue.TABLE: ((-500, -200), _SAME, _SAME),
}

# Tumor contrast to the liver (HU, core minus liver) per phase and kind, and how often a tumor
# is hyperdense. Per ct-facts.md, metastases (the most common) are darker than the liver in every
# phase and hepatocellular carcinoma is near or below it except on the arterial phase, where it
# washes in: only arterial-phase tumors are hyperdense.
TUMOR_CONTRAST = {
    "native": {"hypo": (-30, -10)},
    "arterial": {"hypo": (-40, -15), "hyper": (20, 60)},
    "portal": {"hypo": (-60, -20)},
}
HYPER_PROBABILITY = {"native": 0.0, "arterial": 0.5, "portal": 0.0}


def hu_range(tissue: Tissue, phase: str) -> tuple[float, float]:
    """The (low, high) HU a tissue is drawn from in a phase."""
    ranges = HU_RANGES[tissue]
    chosen = ranges[PHASES.index(phase)]
    return ranges[0] if chosen is _SAME else chosen


def sample_palette(rng: np.random.Generator, phase: str) -> np.ndarray:
    """HU per tissue id (256 entries, float32) for one patient; tumor entries are filled later."""
    palette = np.zeros(256, dtype=np.float32)
    for tissue in Tissue:
        low, high = hu_range(tissue, phase)
        palette[tissue] = rng.uniform(low, high)
    if phase != "arterial":  # the zebra pattern exists only in the arterial phase
        palette[Tissue.SPLEEN_ALT] = palette[Tissue.SPLEEN]
    return palette
