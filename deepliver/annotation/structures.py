"""The structures DeepLiver annotates, with their label values, colours and SNOMED CT codes.

Label maps use 0 for background, then one value per structure (1 liver, 2 tumor). Each
structure carries a DICOM-style coded category and type (and, for a lesion, the anatomic region
it lies in), so DICOM SEG and Slicer's terminology both describe a segment the same way.

The codes are those of DICOM CID 7150 / 7151 / 7159 as listed in Slicer's own terminology files
(``SegmentationCategoryTypeModifier-DICOM-Master.json``): Liver is SCT 10200004 in the category
"Anatomical Structure" (SCT 123037004); a liver tumor is "Neoplasm" (SCT 108369006) in the
category "Morphologically Altered Structure" (SCT 49755003), in the anatomic region Liver.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepliver.errors import DeepLiverError
from deepliver.volume import Volume


@dataclass(frozen=True)
class Code:
    """A coded concept: (scheme designator, code value, code meaning), as in DICOM."""

    scheme: str
    value: str
    meaning: str


SCT = "SCT"

ANATOMICAL_STRUCTURE = Code(SCT, "123037004", "Anatomical Structure")
MORPHOLOGICALLY_ALTERED_STRUCTURE = Code(SCT, "49755003", "Morphologically Altered Structure")
LIVER_CODE = Code(SCT, "10200004", "Liver")
NEOPLASM_CODE = Code(SCT, "108369006", "Neoplasm")


@dataclass(frozen=True)
class Structure:
    """One annotated structure: its name, label value, display colour and codes."""

    name: str
    label: int
    color: tuple[int, int, int]  # RGB, 0..255
    category: Code
    type: Code
    region: Code | None = None  # anatomic region, for structures defined by where they lie

    @property
    def color_float(self) -> tuple[float, float, float]:
        """The colour as 0..1 floats (Slicer segments, VTK)."""
        return tuple(round(c / 255.0, 6) for c in self.color)


# Liver colour: the recommended display colour of Liver in Slicer's and DICOM's lists.
LIVER = Structure("Liver", 1, (221, 130, 101), ANATOMICAL_STRUCTURE, LIVER_CODE)
TUMOR = Structure(
    "Liver tumor", 2, (144, 238, 144), MORPHOLOGICALLY_ALTERED_STRUCTURE, NEOPLASM_CODE, LIVER_CODE
)

STRUCTURES: tuple[Structure, ...] = (LIVER, TUMOR)


def structure_by_label(label: int, structures=STRUCTURES) -> Structure:
    for structure in structures:
        if structure.label == label:
            return structure
    known = ", ".join(f"{s.label} ({s.name})" for s in structures)
    raise DeepLiverError(f"no structure has label value {label}; known: {known}")


def structure_by_name(name: str, structures=STRUCTURES) -> Structure:
    for structure in structures:
        if structure.name.lower() == name.lower():
            return structure
    known = ", ".join(s.name for s in structures)
    raise DeepLiverError(f"no structure is named {name!r}; known: {known}")


def checked_labels(volume: Volume, where: str) -> Volume:
    """uint8 labels 0/1/2, or an error naming the file and the values it holds."""
    values = np.unique(volume.array)
    bad = [v for v in values.tolist() if v not in (0, 1, 2)]
    if bad:
        shown = ", ".join(f"{v:g}" for v in bad[:8]) + (" ..." if len(bad) > 8 else "")
        raise DeepLiverError(
            f"{where}: label values {shown} are not DeepLiver labels (0 background, 1 liver, "
            "2 tumor); map them first (deepliver convert writes label maps)"
        )
    return volume.with_array(volume.array.astype(np.uint8, copy=False))
