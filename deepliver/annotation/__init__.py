"""What is annotated: the structures (liver, tumor) with their label values and standard codes."""

from deepliver.annotation.structures import (
    LIVER,
    STRUCTURES,
    TUMOR,
    Code,
    Structure,
    structure_by_label,
    structure_by_name,
)

__all__ = [
    "LIVER",
    "STRUCTURES",
    "TUMOR",
    "Code",
    "Structure",
    "structure_by_label",
    "structure_by_name",
]
