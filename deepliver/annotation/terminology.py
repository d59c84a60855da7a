"""Terminology of DeepLiver's structures: Slicer's segment tag string, its ``.term.json`` context,
and the way back from codes (or a name) to a :class:`Structure`.

Slicer-free, so ``.seg.nrrd`` and DICOM SEG files speak the same codes as the Slicer modules.
The context document has the layout of Slicer's ``SegmentationCategoryTypeModifier-*.json``
files (read by ``vtkSlicerTerminologiesModuleLogic::LoadTerminologyFromFile``).

A segment's terminology is a tag string in the format of
``vtkSlicerTerminologiesModuleLogic::SerializeTerminologyEntry`` (the same in Slicer 5.8 and
5.12): seven ``~``-separated fields, codes written ``scheme^value^meaning``::

    context~category~type~typeModifier~anatomicContext~region~regionModifier
"""

from __future__ import annotations

import json
import re

from pydicom.sr.coding import Code as DicomCode

from deepliver.annotation.structures import STRUCTURES, Code, Structure
from deepliver.errors import DeepLiverError

CONTEXT_NAME = "Segmentation category and type - DeepLiver"
# Slicer ships this anatomic context (AnatomicRegionAndModifier-DICOM-Master.json); Liver is in it.
ANATOMIC_CONTEXT_NAME = "Anatomic codes - DICOM master list"
SCHEMA = "https://raw.githubusercontent.com/qiicr/dcmqi/master/doc/segment-context-schema.json#"

# Name of the segment tag holding the entry (vtkSegment::GetTerminologyEntryTagName()).
TAG_NAME = "TerminologyEntry"


def _code_text(code: Code | None) -> str:
    if code is None:
        return "^^"
    for part in (code.scheme, code.value, code.meaning):
        if "~" in part or "^" in part:
            raise ValueError(f"a code may not contain '~' or '^': {code}")
    return f"{code.scheme}^{code.value}^{code.meaning}"


def terminology_entry(structure: Structure, context_name: str = CONTEXT_NAME) -> str:
    """The segment tag string for ``structure`` (SerializeTerminologyEntry's format)."""
    anatomic_context = ANATOMIC_CONTEXT_NAME if structure.region is not None else ""
    fields = [
        context_name,
        _code_text(structure.category),
        _code_text(structure.type),
        _code_text(None),  # type modifier
        anatomic_context,
        _code_text(structure.region),
        _code_text(None),  # region modifier
    ]
    return "~".join(fields)


def parse_terminology_entry(text: str) -> dict:
    """The fields of a segment tag string; raises ValueError where Slicer would refuse it."""
    fields = text.split("~")
    if len(fields) != 7:
        raise ValueError(f"a terminology entry has 7 '~'-separated fields, got {len(fields)}")
    if not fields[0]:
        raise ValueError("a terminology entry needs a context name")

    def code(part: str, what: str, required: bool) -> Code | None:
        pieces = part.split("^")
        if len(pieces) != 3:
            raise ValueError(f"{what} must be 'scheme^value^meaning', got {part!r}")
        if not any(pieces):
            if required:
                raise ValueError(f"{what} is empty")
            return None
        return Code(*pieces)

    return {
        "context": fields[0],
        "category": code(fields[1], "category", True),
        "type": code(fields[2], "type", True),
        "type_modifier": code(fields[3], "type modifier", False),
        "anatomic_context": fields[4],
        "region": code(fields[5], "anatomic region", False),
        "region_modifier": code(fields[6], "anatomic region modifier", False),
    }


# --- the .term.json context document ----------------------------------------------------


def _code_json(code: Code) -> dict:
    return {
        "CodeMeaning": code.meaning,
        "CodingSchemeDesignator": code.scheme,
        "CodeValue": code.value,
        **({"SNOMEDCTConceptID": code.value} if code.scheme == "SCT" else {}),
    }


def terminology_document(structures=STRUCTURES, context_name: str = CONTEXT_NAME) -> dict:
    """The ``.term.json`` content: one category per distinct category, its types within."""
    categories: dict[Code, dict] = {}
    for structure in structures:
        category = categories.get(structure.category)
        if category is None:
            category = {
                **_code_json(structure.category),
                # Slicer shows the anatomic region selector only where showAnatomy is true.
                "showAnatomy": False,
                "Type": [],
            }
            categories[structure.category] = category
        if structure.region is not None:
            category["showAnatomy"] = True
        category["Type"].append(
            {
                **_code_json(structure.type),
                "recommendedDisplayRGBValue": list(structure.color),
                "3dSlicerLabel": structure.name.lower(),
            }
        )
    return {
        "SegmentationCategoryTypeContextName": context_name,
        "@schema": SCHEMA,
        "SegmentationCodes": {"Category": list(categories.values())},
    }


def terminology_text(structures=STRUCTURES) -> str:
    return json.dumps(terminology_document(structures), indent=2) + "\n"


# --- from codes or names back to a structure --------------------------------------------


def same_code(a: Code | None, b: Code | None) -> bool:
    """Codes are equal by scheme and value; pydicom maps retired SNOMED-RT (SRT) codes to SCT,
    so SEGs written by older tools (dcmqi, Slicer 4) still match."""
    if a is None or b is None:
        return a is b
    return DicomCode(a.value, a.scheme, a.meaning) == DicomCode(b.value, b.scheme, b.meaning)


def structure_for_codes(
    type_code: Code, region: Code | None = None, structures=STRUCTURES
) -> Structure | None:
    """The structure with this property type; the anatomic region decides between several.

    The category is not compared: tools file Liver under "Anatomical Structure" or "Tissue".
    """
    matches = [s for s in structures if same_code(s.type, type_code)]
    if len(matches) > 1 and region is not None:
        matches = [s for s in matches if same_code(s.region, region)] or matches
    return matches[0] if matches else None


def structure_for_entry(text: str, structures=STRUCTURES) -> Structure | None:
    """The structure a segment tag string describes, or None (unknown codes, bad string)."""
    try:
        fields = parse_terminology_entry(text)
    except ValueError:
        return None
    return structure_for_codes(fields["type"], fields["region"], structures)


def structure_for_name(name: str, structures=STRUCTURES) -> Structure | None:
    """The structure a segment name points to: "Liver", "Liver tumor", "Tumor 3", "neoplasm".

    The fallback for files without usable codes: a trailing number is dropped, then the name is
    compared with each structure's name, its last word and its type's meaning.
    """
    key = re.sub(r"[\s_-]*\d+$", "", name.strip()).lower()
    for structure in structures:
        words = structure.name.lower().split()
        if key in {structure.name.lower(), words[-1], structure.type.meaning.lower()}:
            return structure
    return None


def describe_structures(structures=STRUCTURES) -> str:
    """ "Liver (SCT 10200004), ..." for error messages."""
    return ", ".join(f"{s.name} ({s.type.scheme} {s.type.value})" for s in structures)


def require_structure(structure: Structure | None, where: str) -> Structure:
    """``structure``, or a DeepLiverError saying which file and segment could not be mapped."""
    if structure is None:
        raise DeepLiverError(
            f"{where}: no DeepLiver structure matches; known: {describe_structures()}"
        )
    return structure
