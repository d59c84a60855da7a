"""Find every image series under a folder (or in one file) without stopping at a bad file.

Only headers are read. Files are grouped by Series Instance UID; a UID that holds several
stacks (another Image Orientation, matrix size or pixel spacing) is split, the largest stack
keeping the key ``SERIESUID`` and the others getting ``SERIESUID#2``, ``SERIESUID#3``, ...
Within a stack, files are sorted by their position along the slice normal, never by file name
or Instance Number. What a radiologist must know about (unreadable files, missing, duplicate or
unevenly spaced slices, split series, non-image objects that were skipped) becomes a
:class:`Problem` whose message names the file or the series.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

from deepliver.errors import DeepLiverError

PIXEL_DATA_TAG = 0x7FE00010
UNDEFINED_LENGTH = 0xFFFFFFFF
# Two slices closer than this along the normal are the same slice position (mm).
DUPLICATE_TOLERANCE_MM = 1e-3
# A slice step may differ from the nominal spacing by this fraction and still be "even".
SPACING_TOLERANCE = 0.01
# In-plane drift of slice positions beyond this means the stack is sheared (gantry tilt), mm.
SHEAR_TOLERANCE_MM = 0.01

UNCOMPRESSED_SYNTAXES = {
    pydicom.uid.ImplicitVRLittleEndian,
    pydicom.uid.ExplicitVRLittleEndian,
    pydicom.uid.ExplicitVRBigEndian,
    pydicom.uid.DeflatedExplicitVRLittleEndian,
}

# Problem kinds.
NOT_DICOM = "not_dicom"
UNREADABLE = "unreadable"
TRUNCATED = "truncated"
NON_IMAGE = "non_image"
SPLIT_SERIES = "split_series"
MISSING_SLICES = "missing_slices"
UNEVEN_SPACING = "uneven_spacing"
DUPLICATE_SLICES = "duplicate_slices"
SHEARED = "sheared"
MISSING_UIDS = "missing_uids"
# Kinds that concern one file that was left out, not a series.
FILE_KINDS = {NOT_DICOM, UNREADABLE, TRUNCATED, NON_IMAGE}
# Kinds that keep a stack from being read onto a regular grid.
BLOCKING_KINDS = {UNEVEN_SPACING, SHEARED}


@dataclass(frozen=True)
class Problem:
    """Something wrong or skipped; ``message`` names the file or series it concerns."""

    kind: str
    message: str
    path: Path | None = None


@dataclass(frozen=True, eq=False)
class SliceHeader:
    """What the reader needs from one image file, taken from its header only."""

    path: Path
    sop_uid: str
    instance_number: int | None
    position: np.ndarray  # Image Position (Patient), LPS mm
    rows: int
    columns: int
    transfer_syntax: str
    # Byte offset of the raw pixel values when they are stored uncompressed, else None.
    pixel_offset: int | None
    pixel_length: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    samples_per_pixel: int
    slope: float
    intercept: float
    orientation: tuple[float, ...]
    pixel_spacing: tuple[float, float]  # (row spacing = y, column spacing = x), mm
    patient_id: str
    study_uid: str
    series_uid: str
    modality: str
    description: str
    along_normal: float = 0.0


@dataclass(eq=False)
class SeriesInfo:
    """One stack of image slices that can form a volume."""

    key: str  # SERIESUID, or SERIESUID#2, #3, ... for extra stacks under the same UID
    patient_id: str
    study_uid: str
    series_uid: str
    modality: str
    description: str
    size: tuple[int, int, int]  # (columns, rows, distinct slice positions present)
    spacing: tuple[float, float, float]  # (x, y, z); z measured along the slice normal
    origin: tuple[float, float, float]  # position of the first slice, LPS mm
    direction: tuple[float, ...]  # 3x3 row-major, columns = row, column and normal cosines
    n_files: int
    slices: list[SliceHeader]  # sorted along the slice normal; duplicates stay adjacent
    problems: list[Problem] = field(default_factory=list)
    missing_positions: list[float] = field(default_factory=list)  # mm along the normal

    @property
    def files(self) -> list[Path]:
        return [s.path for s in self.slices]

    @property
    def normal(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=np.float64).reshape(3, 3)[:, 2]

    def describe(self) -> str:
        """One line for listings and error messages."""
        cols, rows, n = self.size
        text = f"{self.key} ({self.modality}, {cols}x{rows}x{n}"
        return text + (f", '{self.description}')" if self.description else ")")


@dataclass(eq=False)
class ScanReport:
    """Every image stack found, and every problem met on the way."""

    series: list[SeriesInfo]
    problems: list[Problem]

    @property
    def skipped(self) -> list[Problem]:
        """Non-image DICOM objects (SEG, SR, ...) that were not treated as series."""
        return [p for p in self.problems if p.kind == NON_IMAGE]

    @property
    def unused_files(self) -> list[Problem]:
        """Files left out of every series: not DICOM, damaged, or not an image."""
        return [p for p in self.problems if p.kind in FILE_KINDS]

    def find(self, key: str) -> SeriesInfo | None:
        return next((s for s in self.series if s.key == key), None)


# --- reading one header -------------------------------------------------------------------


def _text(ds, keyword: str) -> str:
    value = ds.get(keyword, "")
    return "" if value is None else str(value).strip()


class _RawHeader:
    """Fast access to the few numeric and UID elements we need, straight from their bytes.

    pydicom's value conversion costs more than parsing the file; these elements are plain
    ASCII (UI, CS, IS, DS) or unsigned shorts (US), so they are decoded here directly.
    """

    def __init__(self, ds, big_endian: bool) -> None:
        self.ds = ds
        self.short = struct.Struct(">H" if big_endian else "<H")

    def _raw(self, keyword: str):
        element = self.ds.get_item(keyword) if keyword in self.ds else None
        return None if element is None else element.value

    def text(self, keyword: str) -> str:
        value = self._raw(keyword)
        if isinstance(value, bytes):
            return value.decode("latin-1").strip(" \x00")
        return "" if value is None else str(value).strip()

    def numbers(self, keyword: str) -> list[float] | None:
        """Backslash-separated decimal values, or None when absent or empty."""
        value = self._raw(keyword)
        if value is None:
            return None
        if isinstance(value, bytes):
            parts = value.decode("latin-1").strip(" \x00").split("\\")
            return [float(part) for part in parts] if parts != [""] else None
        values = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
        return [float(v) for v in values] or None

    def number(self, keyword: str, default: float) -> float:
        try:
            values = self.numbers(keyword)
        except ValueError:
            return default
        return default if not values else values[0]

    def ushort(self, keyword: str, default: int) -> int:
        value = self._raw(keyword)
        if isinstance(value, bytes) and len(value) >= 2:
            return self.short.unpack(value[:2])[0]
        return default if value in (None, b"") else int(value)


def _pixel_element(fp, transfer_syntax: str) -> tuple[int | None, int] | None:
    """(offset of the pixel values, their length) when the file is at Pixel Data, else None.

    ``dcmread(stop_before_pixels=True)`` leaves the file at the start of the Pixel Data
    element, so its value offset comes for free with the header pass.
    """
    start = fp.tell()
    head = fp.read(12)
    if len(head) < 8:
        return None
    big = transfer_syntax == pydicom.uid.ExplicitVRBigEndian
    endian = ">" if big else "<"
    group, element = struct.unpack(endian + "HH", head[:4])
    if (group << 16 | element) != PIXEL_DATA_TAG:
        return None
    if transfer_syntax == pydicom.uid.ImplicitVRLittleEndian:
        (length,) = struct.unpack("<I", head[4:8])
        return start + 8, length
    if len(head) < 12:
        return None
    if head[4:6] in (b"OB", b"OW", b"UN", b"OD", b"OF", b"OL", b"OV"):
        (length,) = struct.unpack(endian + "I", head[8:12])
        return start + 12, length
    (length,) = struct.unpack(endian + "H", head[6:8])
    return start + 8, length


def _is_image_class(ds) -> bool:
    """Whether the file claims an image SOP class (then a missing Pixel Data means damage)."""
    sop_class = ds.file_meta.get("MediaStorageSOPClassUID") or ds.get("SOPClassUID")
    return sop_class is not None and "Image Storage" in pydicom.uid.UID(str(sop_class)).name


def _read_header(path: Path) -> SliceHeader | Problem:
    try:
        with open(path, "rb") as fp:
            ds = pydicom.dcmread(fp, stop_before_pixels=True, force=False)
            syntax = str(ds.file_meta.get("TransferSyntaxUID", pydicom.uid.ImplicitVRLittleEndian))
            pixel = None
            if syntax != pydicom.uid.DeflatedExplicitVRLittleEndian:
                pixel = _pixel_element(fp, syntax)
            file_size = os.fstat(fp.fileno()).st_size
    except InvalidDicomError:
        return Problem(NOT_DICOM, f"{path}: not a DICOM file, skipped", path)
    except Exception as error:  # any damage to one file must not stop the scan
        return Problem(UNREADABLE, f"{path}: unreadable DICOM file ({error}), skipped", path)

    raw = _RawHeader(ds, big_endian=syntax == pydicom.uid.ExplicitVRBigEndian)
    modality = raw.text("Modality")
    has_image_attributes = "Rows" in ds and "Columns" in ds
    try:
        position = raw.numbers("ImagePositionPatient")
        orientation = raw.numbers("ImageOrientationPatient")
    except ValueError as error:
        return Problem(UNREADABLE, f"{path}: malformed Image Position/Orientation ({error})", path)
    frames = int(raw.number("NumberOfFrames", 1))
    deflated = syntax == pydicom.uid.DeflatedExplicitVRLittleEndian
    if pixel is None and not deflated:
        if (has_image_attributes and position is not None) or _is_image_class(ds):
            return Problem(TRUNCATED, f"{path}: image header but no pixel data (truncated?)", path)
        what = modality or "unknown modality"
        return Problem(NON_IMAGE, f"{path}: {what} object without pixel data, skipped", path)
    if position is None or orientation is None or frames != 1 or not has_image_attributes:
        what = modality or "unknown modality"
        reason = "multi-frame" if frames != 1 else "no Image Position/Orientation"
        return Problem(NON_IMAGE, f"{path}: {what} object ({reason}), not an image series", path)

    offset, length = (None, 0) if pixel is None else pixel
    compressed = syntax not in UNCOMPRESSED_SYNTAXES or deflated or length == UNDEFINED_LENGTH
    if offset is not None and length != UNDEFINED_LENGTH and offset + length > file_size:
        return Problem(TRUNCATED, f"{path}: pixel data cut short (truncated file), skipped", path)
    try:
        spacing = raw.numbers("PixelSpacing") or [1.0, 1.0]
        instance = raw.number("InstanceNumber", float("nan"))
        bits_allocated = raw.ushort("BitsAllocated", 16)
        header = SliceHeader(
            path=path,
            sop_uid=raw.text("SOPInstanceUID"),
            instance_number=None if np.isnan(instance) else int(instance),
            position=np.array(position, dtype=np.float64),
            rows=raw.ushort("Rows", 0),
            columns=raw.ushort("Columns", 0),
            transfer_syntax=syntax,
            pixel_offset=None if compressed else offset,
            pixel_length=0 if compressed else length,
            bits_allocated=bits_allocated,
            bits_stored=raw.ushort("BitsStored", bits_allocated),
            pixel_representation=raw.ushort("PixelRepresentation", 0),
            samples_per_pixel=raw.ushort("SamplesPerPixel", 1),
            slope=raw.number("RescaleSlope", 1.0),
            intercept=raw.number("RescaleIntercept", 0.0),
            orientation=tuple(orientation),
            pixel_spacing=(spacing[0], spacing[1]),
            patient_id=_text(ds, "PatientID"),
            study_uid=raw.text("StudyInstanceUID"),
            series_uid=raw.text("SeriesInstanceUID"),
            modality=modality,
            description=_text(ds, "SeriesDescription"),
        )
    except (TypeError, ValueError, IndexError) as error:
        return Problem(UNREADABLE, f"{path}: malformed image header ({error}), skipped", path)
    if len(header.orientation) != 6 or len(header.position) != 3:
        return Problem(UNREADABLE, f"{path}: malformed Image Position/Orientation, skipped", path)
    row, col = np.array(header.orientation[:3]), np.array(header.orientation[3:])
    if not (
        abs(np.linalg.norm(row) - 1) < 0.1
        and abs(np.linalg.norm(col) - 1) < 0.1
        and abs(row @ col) < 0.01
        and min(header.pixel_spacing) > 0
        and header.rows > 0
        and header.columns > 0
    ):
        return Problem(UNREADABLE, f"{path}: invalid orientation, spacing or size, skipped", path)
    if header.pixel_offset is not None and header.pixel_length < header.rows * header.columns:
        return Problem(TRUNCATED, f"{path}: pixel data shorter than the image, skipped", path)
    return header


# --- grouping into stacks -----------------------------------------------------------------


def _directions(orientation: tuple[float, ...]) -> np.ndarray:
    row = np.asarray(orientation[:3], dtype=np.float64)
    col = np.asarray(orientation[3:], dtype=np.float64)
    row /= np.linalg.norm(row) or 1.0
    col -= row * (row @ col)  # orthogonalise away rounding in the stored cosines
    col /= np.linalg.norm(col) or 1.0
    return np.column_stack([row, col, np.cross(row, col)])


def _stack_key(header: SliceHeader) -> tuple:
    return (
        tuple(round(v, 4) for v in header.orientation),
        header.rows,
        header.columns,
        tuple(round(v, 4) for v in header.pixel_spacing),
    )


def _build_stack(key: str, headers: list[SliceHeader]) -> SeriesInfo:
    first = headers[0]
    direction = _directions(first.orientation)
    normal = direction[:, 2]
    along = [float(h.position @ normal) for h in headers]
    order = sorted(range(len(headers)), key=lambda i: (along[i], str(headers[i].path)))
    slices = []
    for i in order:
        h = headers[i]
        object.__setattr__(h, "along_normal", along[i])
        slices.append(h)
    label = f"series {key}"
    problems: list[Problem] = []

    distinct: list[SliceHeader] = []
    duplicates: list[str] = []
    for h in slices:
        if distinct and abs(h.along_normal - distinct[-1].along_normal) <= DUPLICATE_TOLERANCE_MM:
            duplicates.append(f"{h.path.name} at {h.along_normal:.3f} mm")
        else:
            distinct.append(h)
    if duplicates:
        problems.append(
            Problem(
                DUPLICATE_SLICES,
                f"{label}: {len(duplicates)} duplicate slice(s) at the same position: "
                + ", ".join(duplicates[:5])
                + (" ..." if len(duplicates) > 5 else ""),
            )
        )

    positions = np.array([h.along_normal for h in distinct])
    steps = np.diff(positions)
    spacing_z = 1.0
    missing: list[float] = []
    if len(steps):
        nominal = float(np.median(steps))
        multiples = np.rint(steps / nominal)
        uneven = np.abs(steps - multiples * nominal) > SPACING_TOLERANCE * nominal
        if np.any(uneven):
            problems.append(
                Problem(
                    UNEVEN_SPACING,
                    f"{label}: uneven slice spacing (steps {np.round(np.unique(steps), 3).tolist()}"
                    f" mm, nominal {nominal:.3f} mm)",
                )
            )
            spacing_z = nominal
        else:
            spacing_z = (positions[-1] - positions[0]) / float(multiples.sum())
            for index in np.flatnonzero(multiples > 1):
                for step in range(1, int(multiples[index])):
                    missing.append(round(float(positions[index] + step * spacing_z), 3))
        if missing:
            shown = ", ".join(f"{p:.3f}" for p in missing[:10]) + (
                " ..." if len(missing) > 10 else ""
            )
            problems.append(
                Problem(
                    MISSING_SLICES,
                    f"{label}: {len(missing)} missing slice(s) at {shown} mm along the normal",
                )
            )
        offsets = np.array([h.position for h in distinct]) - distinct[0].position
        drift = offsets - np.outer(offsets @ normal, normal)
        if np.max(np.linalg.norm(drift, axis=1)) > SHEAR_TOLERANCE_MM:
            problems.append(
                Problem(SHEARED, f"{label}: slice positions drift in-plane (gantry tilt or shear)")
            )

    return SeriesInfo(
        key=key,
        patient_id=first.patient_id,
        study_uid=first.study_uid,
        series_uid=first.series_uid,
        modality=first.modality,
        description=first.description,
        size=(first.columns, first.rows, len(distinct)),
        spacing=(first.pixel_spacing[1], first.pixel_spacing[0], float(spacing_z)),
        origin=tuple(float(v) for v in distinct[0].position),
        direction=tuple(float(v) for v in direction.reshape(-1)),
        n_files=len(slices),
        slices=slices,
        problems=problems,
        missing_positions=missing,
    )


def _stacks_of_series(series_uid: str, headers: list[SliceHeader]) -> list[SeriesInfo]:
    groups: dict[tuple, list[SliceHeader]] = defaultdict(list)
    for h in headers:
        groups[_stack_key(h)].append(h)
    ordered = sorted(groups.values(), key=lambda g: (-len(g), str(min(h.path for h in g))))
    stacks = []
    for number, group in enumerate(ordered, start=1):
        key = series_uid if number == 1 else f"{series_uid}#{number}"
        stack = _build_stack(key, group)
        if len(ordered) > 1:
            stack.problems.insert(
                0,
                Problem(
                    SPLIT_SERIES,
                    f"series {series_uid} mixes {len(ordered)} stacks (different orientation, "
                    f"size or pixel spacing); this one is {key} with {len(group)} file(s)",
                ),
            )
        stacks.append(stack)
    return stacks


# --- walking --------------------------------------------------------------------------------


def _files_under(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    found = []
    for folder, subfolders, names in os.walk(root):
        subfolders.sort()
        found.extend(Path(folder) / name for name in sorted(names))
    return found


def scan(path: Path | str) -> ScanReport:
    """Headers of every file under ``path`` grouped into image stacks, with all problems met."""
    root = Path(path)
    if not root.exists():
        raise DeepLiverError(f"{root}: no such file or folder")
    by_series: dict[str, list[SliceHeader]] = defaultdict(list)
    problems: list[Problem] = []
    damaged: dict[str, list[Problem]] = defaultdict(list)
    for file in _files_under(root):
        result = _read_header(file)
        if isinstance(result, Problem):
            problems.append(result)
            if result.kind == TRUNCATED:
                uid = _series_uid_of(file)
                if uid:
                    damaged[uid].append(result)
        else:
            by_series[result.series_uid or _stand_in_key(file)].append(result)

    series = []
    for uid in sorted(by_series):
        for stack in _stacks_of_series(uid, by_series[uid]):
            stack.problems.extend(_missing_uid_problems(stack))
            problems.extend(stack.problems)
            stack.problems.extend(damaged.get(uid, []))
            series.append(stack)
    return ScanReport(series=series, problems=problems)


def _stand_in_key(path: Path) -> str:
    """A key for files without a Series Instance UID (de-identified too far): one per folder."""
    digest = hashlib.sha1(str(path.parent.resolve()).encode("utf-8")).hexdigest()[:12]
    return f"NO-SERIES-UID-{digest}"


def _missing_uid_problems(stack: SeriesInfo) -> list[Problem]:
    missing = [
        name
        for name, value in (
            ("Study Instance UID", stack.study_uid),
            ("Series Instance UID", stack.series_uid),
            ("SOP Instance UIDs", all(h.sop_uid for h in stack.slices)),
        )
        if not value
    ]
    if not missing:
        return []
    folder = stack.slices[0].path.parent
    message = (
        f"series {stack.key} in {folder}: files lack {', '.join(missing)}; it is listed under a "
        "stand-in key and its fingerprint rests on geometry alone"
    )
    return [Problem(MISSING_UIDS, message)]


def _series_uid_of(path: Path) -> str:
    """Series UID of a damaged file whose header could be read, to tell its series about it."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
        return _text(ds, "SeriesInstanceUID")
    except Exception:  # best effort only
        return ""
