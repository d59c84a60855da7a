"""What of a phantom's tumors a reader could see at all.

The phantom draws some tumors, and some brighter rims, within a few HU of the liver, as
isoattenuating lesions and rims are in real CT. Their labels still count in tumor Dice and in
lesions found, so they cap what any model can score on a phantom set; the benchmark prints
that cap beside the figures.
"""

from __future__ import annotations

import numpy as np

from deepliver.annotation.structures import TUMOR
from deepliver.phantom.generate import Phantom
from deepliver.phantom.tissues import Tissue

VISIBLE_CONTRAST_HU = 10.0  # below this, CT reading calls a lesion isoattenuating


def visible_tumor(phantom: Phantom, min_contrast_hu: float = VISIBLE_CONTRAST_HU) -> np.ndarray:
    """Tumor-labelled voxels whose tissue (a tumor's core or rim) was drawn at least
    ``min_contrast_hu`` above or below the liver (bool, on the phantom's grid)."""
    if phantom.tissue is None or phantom.palette is None:
        raise ValueError("the phantom carries no tissue map and palette: make it with make_phantom")
    tissue = phantom.tissue.array
    tumor = phantom.labels.array == TUMOR.label
    contrast = np.abs(phantom.palette - phantom.palette[Tissue.LIVER])
    return tumor & (contrast >= min_contrast_hu)[tissue]
