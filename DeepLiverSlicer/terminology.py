"""Slicer side of DeepLiver's terminology: load the ``.term.json`` context, tag vtkSegments.

The tag strings and the context document come from :mod:`deepliver.annotation.terminology`
(Slicer-free, shared with the ``.seg.nrrd`` and DICOM SEG files). This module writes that
document to ``Resources/DeepLiver.term.json`` (run ``python -m DeepLiverSlicer.terminology``
after changing the structure table; CI checks they agree) and makes the Slicer calls.
"""

from __future__ import annotations

import sys
from pathlib import Path

from deepliver.annotation.structures import Structure
from deepliver.annotation.terminology import (  # noqa: F401  (parse_terminology_entry: re-export)
    CONTEXT_NAME,
    parse_terminology_entry,
    terminology_entry,
    terminology_text,
)
from DeepLiverSlicer import RESOURCES

TERM_FILE = RESOURCES / "DeepLiver.term.json"


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
