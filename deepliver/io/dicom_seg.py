"""DICOM Segmentation (SEG) <-> :class:`Segmentation`, through highdicom.

The SEG is what PACS and other viewers read: one BINARY segment per DeepLiver segment, coded
with SNOMED CT category, type and anatomic region from the structure table, MANUAL for a
reader's drawing or AUTOMATIC with the model's name and version. Its frames reference the
source CT instances one to one, so the segmentation's grid must be exactly the source series'
grid (a mismatch is refused, never resampled); empty frames are left out.

Reading puts the frames back onto the referenced series' grid (by SOP Instance UID) when the
series is given, otherwise onto the grid spanned by the SEG's own plane positions, and maps
each segment to its structure by its property type code (SRT codes of older tools included).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.sr.codedict import codes
from pydicom.uid import SegmentationStorage

import deepliver
from deepliver.annotation.segmentation import Segment, Segmentation
from deepliver.annotation.structures import Code, Structure
from deepliver.annotation.terminology import (
    require_structure,
    structure_for_codes,
    structure_for_name,
)
from deepliver.errors import DeepLiverError
from deepliver.io.atomic import write_atomically
from deepliver.io.seg_frames import check_frames_on_grid, frames_on_own_planes
from deepliver.io.series_identity import SeriesIdentity, missing_uids
from deepliver.io.source_series import Source, SourceSeries, source_series
from deepliver.volume import Grid

PERSON_NAME_WARNING = ".*unlikely to represent the intended person name"

# --- writing -------------------------------------------------------------------------------


def _coded(code: Code) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(code.value, code.scheme, code.meaning)


def _description(
    number: int, segment: Segment, algorithm: tuple[str, str] | None
) -> hd.seg.SegmentDescription:
    structure = segment.structure
    identification = None
    if algorithm is not None:
        name, version = algorithm
        family = codes.cid7162.ArtificialIntelligence
        identification = hd.AlgorithmIdentificationSequence(name, family, version)
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=segment.name,
        segmented_property_category=_coded(structure.category),
        segmented_property_type=_coded(structure.type),
        algorithm_type=(
            hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
            if algorithm
            else hd.seg.SegmentAlgorithmTypeValues.MANUAL
        ),
        algorithm_identification=identification,
        anatomic_regions=[_coded(structure.region)] if structure.region else None,
        display_color=hd.color.CIELabColor.from_rgb(*segment.display_color),
    )


def _masks_on_source(segmentation: Segmentation, source: SourceSeries) -> np.ndarray:
    """Masks (segment, z, y, x) in the source's slice order; flipped if only k runs backwards."""
    grid, target = segmentation.grid, source.grid
    if grid.same_as(target):
        return segmentation.masks
    last = grid.index_to_physical((0, 0, grid.shape[0] - 1))
    reversed_grid = Grid(grid.shape, last, grid.spacing, grid.direction * [1, 1, -1])
    if reversed_grid.same_as(target):
        return segmentation.masks[:, ::-1]
    raise DeepLiverError(
        f"the segmentation is not on the grid of {source.info.describe()}: "
        f"{grid.describe_difference(target)}"
    )


def _check_identity(identity: SeriesIdentity, source: SourceSeries) -> None:
    if identity.series_uid != source.info.series_uid:
        raise DeepLiverError(
            f"the segmentation belongs to series {identity.series_uid}, but the source files"
            f" are series {source.info.series_uid}"
        )
    if identity.sop_uids and tuple(identity.sop_uids) != tuple(source.sop_uids):
        raise DeepLiverError(
            f"the slices of series {identity.series_uid} changed since it was annotated"
            f" ({len(identity.sop_uids)} SOP Instance UIDs recorded, {len(source.sop_uids)}"
            " found, or another order)"
        )


def _frames(masks: np.ndarray) -> np.ndarray:
    """(segment, z, y, x) masks as highdicom takes them, (frames, rows, columns, segments): a
    bool view. A uint8 copy took one byte per voxel and segment: 2.3 GB more for 30 segments
    on 512 x 512 x 300 (``python bench/bench_dicom_seg.py``)."""
    return np.moveaxis(masks, 0, -1)


def _require_references(source: SourceSeries, path: Path) -> None:
    info = source.info
    missing = missing_uids(info.study_uid, info.series_uid, source.sop_uids)
    if missing:
        raise DeepLiverError(
            f"{path}: a DICOM SEG references its source slices by UID, and the files of "
            f"{info.describe()} lack {', '.join(missing)}"
        )


def _character_set(source: pydicom.Dataset) -> str | list[str] | None:
    """The source's Specific Character Set as highdicom takes it. Scanners write an empty value
    for the default repertoire: alone it is left out (the same meaning), before code
    extensions it is named ("ISO 2022 IR 6")."""
    value = source.get("SpecificCharacterSet") or ""
    values = [str(v).strip() for v in ([value] if isinstance(value, str) else value)]
    if len(values) > 1:
        return [v or "ISO 2022 IR 6" for v in values]
    return values[0] or None


def write_dicom_seg(
    segmentation: Segmentation,
    source: Source,
    path: Path,
    *,
    series_identity: SeriesIdentity | None = None,
    algorithm: tuple[str, str] | None = None,
    manufacturer: str = "DeepLiver",
    series_description: str = "DeepLiver segmentation",
    series_number: int = 300,
    content_creator: str | None = None,
) -> Path:
    """Write ``segmentation`` as a BINARY DICOM SEG over the CT slices in ``source``.

    ``source`` is a folder, one file or a list of files of the series the segmentation was
    drawn on; ``series_identity`` (when known) picks that series and checks its slices are
    unchanged. ``algorithm`` = (model name, version) marks the segments AUTOMATIC.
    Written atomically (temporary file, rename).
    """
    path = Path(path)
    if not segmentation.segments:
        raise DeepLiverError(f"{path}: a DICOM SEG needs at least one segment")
    series_uid = series_identity.series_uid if series_identity else None
    source_stack = source_series(source, series_uid or None)
    _require_references(source_stack, path)
    if series_identity is not None:
        _check_identity(series_identity, source_stack)
    masks = _masks_on_source(segmentation, source_stack)
    datasets = [pydicom.dcmread(f, stop_before_pixels=True) for f in source_stack.files]
    descriptions = [
        _description(n, segment, algorithm)
        for n, segment in enumerate(segmentation.segments, start=1)
    ]
    pixels = _frames(masks)
    try:
        with warnings.catch_warnings():
            # highdicom doubts one-word patient names; the name is the source's, copied as is.
            warnings.filterwarnings("ignore", PERSON_NAME_WARNING, UserWarning)
            seg = hd.seg.Segmentation(
                source_images=datasets,
                pixel_array=pixels,
                segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
                segment_descriptions=descriptions,
                series_instance_uid=hd.UID(),
                series_number=series_number,
                sop_instance_uid=hd.UID(),
                instance_number=1,
                manufacturer=manufacturer,
                manufacturer_model_name="DeepLiver",
                software_versions=deepliver.__version__,
                device_serial_number="0",
                content_label="DEEPLIVER",
                content_description=series_description[:64] or None,
                content_creator_name=content_creator,
                omit_empty_frames=True,
                specific_character_set=_character_set(datasets[0]),
            )
    except (ValueError, TypeError) as error:
        raise DeepLiverError(f"{path}: highdicom refused the segmentation ({error})") from None
    seg.SeriesDescription = series_description
    try:
        return write_atomically(path, lambda p: seg.save_as(p, enforce_file_format=True))
    except OSError as error:
        raise DeepLiverError(f"{path}: cannot be written ({error})") from None


# --- reading -------------------------------------------------------------------------------


def _open_seg(path: Path) -> hd.seg.Segmentation:
    if not path.is_file():
        raise DeepLiverError(f"{path}: no such file")
    try:
        dataset = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, ValueError) as error:
        raise DeepLiverError(f"{path}: not a readable DICOM file ({error})") from None
    sop_class = dataset.get("SOPClassUID")
    if sop_class != SegmentationStorage:
        name = getattr(sop_class, "name", None) or "no SOP Class UID"
        raise DeepLiverError(f"{path}: not a DICOM Segmentation (it is {name})")
    try:
        return hd.seg.Segmentation.from_dataset(dataset, copy=False)
    except (AttributeError, ValueError, KeyError) as error:
        raise DeepLiverError(f"{path}: damaged DICOM Segmentation ({error})") from None


def _segments(seg: hd.seg.Segmentation, path: Path) -> list[Segment]:
    segments, taken = [], set()
    for number in seg.segment_numbers:
        description = seg.get_segment_description(number)
        label = str(description.segment_label) or f"Segment {number}"
        concept = description.segmented_property_type
        type_code = Code(concept.scheme_designator, concept.value, concept.meaning)
        regions = [
            Code(r.scheme_designator, r.value, r.meaning) for r in description.anatomic_regions
        ]
        structure = structure_for_codes(type_code, regions[0] if regions else None)
        structure = structure or structure_for_name(label)
        require_structure(structure, f"{path}: segment {number} {label!r} ({type_code.meaning})")
        name = label if label not in taken else f"{label} #{number}"
        taken.add(name)
        segments.append(Segment(name, structure, _color(description, structure)))
    return segments


def _color(
    description: hd.seg.SegmentDescription, structure: Structure
) -> tuple[int, int, int] | None:
    """The segment's colour, or None where it is the structure's own (after CIELab rounding)."""
    value = description.get("RecommendedDisplayCIELabValue")
    if value is None:
        return None
    rgb = tuple(int(c) for c in hd.color.CIELabColor.from_dicom_value(value).to_rgb())
    own = hd.color.CIELabColor.from_rgb(*structure.color).to_rgb()
    return None if rgb == tuple(int(c) for c in own) else rgb


def _referenced_series(seg: hd.seg.Segmentation, path: Path) -> str:
    references = seg.get("ReferencedSeriesSequence") or []
    uids = {str(item.SeriesInstanceUID) for item in references}
    if len(uids) != 1:
        raise DeepLiverError(f"{path}: expected one referenced series, found {len(uids)}")
    return uids.pop()


def _source_stack(seg: hd.seg.Segmentation, path: Path, source: Source) -> SourceSeries:
    """The series the SEG references, found in ``source``; another series is refused."""
    referenced = _referenced_series(seg, path)
    listing = source if isinstance(source, (str, Path)) else "the source files"
    try:
        stack = source_series(source, referenced if isinstance(source, (str, Path)) else None)
    except DeepLiverError as error:
        raise DeepLiverError(
            f"{path} references series {referenced}, which is not in {listing} ({error})"
        ) from None
    if stack.info.series_uid != referenced:
        raise DeepLiverError(
            f"{path} references series {referenced}, but {listing} holds series "
            f"{stack.info.series_uid}"
        )
    return stack


def _on_source(seg: hd.seg.Segmentation, path: Path, source: Source) -> tuple[Grid, np.ndarray]:
    stack = _source_stack(seg, path, source)
    check_frames_on_grid(seg, path, stack)
    # Tools (dcmqi, Slicer) rarely state SpatialLocationsPreserved; the check above stands in.
    pixels = seg.get_pixels_by_source_instance(
        stack.sop_uids,
        ignore_spatial_locations=True,
        assert_missing_frames_are_empty=True,
        skip_overlap_checks=True,
    )
    return stack.grid, pixels


def read_dicom_seg(path: Path, source_folder: Source | None = None) -> Segmentation:
    """A DICOM SEG as a :class:`Segmentation`, on the grid of its series when that is given.

    Without ``source_folder`` the grid spans only the slices the SEG holds frames for (empty
    frames are usually left out), so pass the series to get its full grid.
    """
    path = Path(path)
    seg = _open_seg(path)
    segments = _segments(seg, path)
    if source_folder is not None:
        grid, pixels = _on_source(seg, path, source_folder)
    else:
        grid, pixels = frames_on_own_planes(seg, path)
    if seg.segmentation_type == hd.seg.SegmentationTypeValues.FRACTIONAL:
        masks = pixels >= 0.5
    else:
        masks = pixels > 0
    return Segmentation(grid, tuple(segments), np.moveaxis(masks, -1, 0))
