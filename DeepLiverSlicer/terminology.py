"""Slicer terminology for DeepLiver's structures: the ``.term.json`` context and segment tags.

The context file is generated from :data:`deepliver.annotation.STRUCTURES` (run
``python -m DeepLiverSlicer.terminology`` after changing the table; CI checks they agree). Its
layout is that of Slicer's own ``SegmentationCategoryTypeModifier-*.json`` files, read by
``vtkSlicerTerminologiesModuleLogic::LoadTerminologyFromFile``.

A segment's terminology is a tag string in the format of
``vtkSlicerTerminologiesModuleLogic::SerializeTerminologyEntry`` (the same in Slicer 5.8 and
5.12): seven ``~``-separated fields, codes written ``scheme^value^meaning``::

    context~category~type~typeModifier~anatomicContext~region~regionModifier
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from deepliver.annotation.structures import STRUCTURES, Code, Structure
from DeepLiverSlicer import RESOURCES

CONTEXT_NAME = "Segmentation category and type - DeepLiver"
# Slicer ships this anatomic context (AnatomicRegionAndModifier-DICOM-Master.json); Liver is in it.
ANATOMIC_CONTEXT_NAME = "Anatomic codes - DICOM master list"
SCHEMA = "https://raw.githubusercontent.com/qiicr/dcmqi/master/doc/segment-context-schema.json#"
TERM_FILE = RESOURCES / "DeepLiver.term.json"

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


def write_terminology_file(path: Path = TERM_FILE) -> Path:
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(terminology_text(), encoding="utf-8")
    temporary.replace(path)
    return path


# --- Slicer ------------------------------------------------------------------------------

_loaded_context: str | None = None


def load_terminology() -> str:
    """Load DeepLiver's context into Slicer's terminology logic once; returns its name."""
    global _loaded_context
    import slicer
    import vtk

    logic = slicer.modules.terminologies.logic()
    names = vtk.vtkStringArray()
    logic.GetLoadedTerminologyNames(names)
    loaded = {names.GetValue(i) for i in range(names.GetNumberOfValues())}
    if _loaded_context in loaded:
        return _loaded_context
    if CONTEXT_NAME not in loaded:
        name = logic.LoadTerminologyFromFile(str(TERM_FILE))
        if not name:
            raise RuntimeError(f"Slicer could not load the terminology file {TERM_FILE}")
        loaded.add(name)
    _loaded_context = CONTEXT_NAME
    return CONTEXT_NAME


def set_segment_terminology(segment, structure: Structure) -> str:
    """Tag a vtkSegment with the structure's codes; returns the tag string."""
    entry = terminology_entry(structure, load_terminology())
    segment.SetTerminology(entry)
    return entry


def segment_terminology(segment) -> str:
    """The terminology tag string of a vtkSegment ('' when it has none)."""
    return segment.GetTerminology()


if __name__ == "__main__":
    written = write_terminology_file(Path(sys.argv[1]) if len(sys.argv) > 1 else TERM_FILE)
    print(f"Wrote {written}")
