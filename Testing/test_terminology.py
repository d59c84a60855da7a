"""From codes or names back to DeepLiver's structures (used when reading SEG and .seg.nrrd)."""

import pytest

from deepliver.annotation.structures import LIVER, TUMOR, Code
from deepliver.annotation.terminology import (
    require_structure,
    structure_for_codes,
    structure_for_entry,
    structure_for_name,
    terminology_entry,
)
from deepliver.errors import DeepLiverError


def test_codes_map_to_structures_including_retired_srt_codes():
    assert structure_for_codes(Code("SCT", "10200004", "Liver")) == LIVER
    assert structure_for_codes(Code("SRT", "T-62000", "Liver")) == LIVER  # dcmqi, Slicer 4
    assert structure_for_codes(Code("SCT", "108369006", "Neoplasm"), LIVER.type) == TUMOR
    assert structure_for_codes(Code("SCT", "85756007", "Tissue")) is None


def test_entries_map_by_type_not_category():
    for structure in (LIVER, TUMOR):
        assert structure_for_entry(terminology_entry(structure)) == structure
    tissue_liver = "ctx~SCT^85756007^Tissue~SCT^10200004^Liver~^^~~^^~^^"
    assert structure_for_entry(tissue_liver) == LIVER
    assert structure_for_entry("not an entry") is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Liver", LIVER),
        ("liver", LIVER),
        ("Liver tumor", TUMOR),
        ("Tumor 12", TUMOR),
        ("tumor_3", TUMOR),
        ("Neoplasm", TUMOR),
        ("Spine", None),
        ("Segment_1", None),
    ],
)
def test_names_map_to_structures(name, expected):
    assert structure_for_name(name) == expected


def test_unmapped_structure_error_names_the_place():
    with pytest.raises(DeepLiverError, match="file.seg.nrrd: segment 'Spine'.*Liver"):
        require_structure(None, "file.seg.nrrd: segment 'Spine'")
