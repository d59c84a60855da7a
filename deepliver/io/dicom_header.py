"""Read the header of one DICOM file, fast, into a :class:`SliceHeader` or a :class:`Problem`.

A scan reads thousands of headers, so this module reads only what the reader needs: the header
without pixels, the few numeric and UID elements decoded straight from their bytes, and the
byte offset of uncompressed pixel values so that they can later be read without pydicom.
"""

from __future__ import annotations

import functools
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

from deepliver.io.problems import NON_IMAGE, NOT_DICOM, TRUNCATED, UNREADABLE, Problem

PIXEL_DATA_TAG = 0x7FE00010
UNDEFINED_LENGTH = 0xFFFFFFFF

UNCOMPRESSED_SYNTAXES = {
    pydicom.uid.ImplicitVRLittleEndian,
    pydicom.uid.ExplicitVRLittleEndian,
    pydicom.uid.ExplicitVRBigEndian,
    pydicom.uid.DeflatedExplicitVRLittleEndian,
}


@dataclass(frozen=True, eq=False)
class SliceHeader:
    """What the reader needs from one image file, taken from its header only."""

    path: Path
    sop_uid: str
    instance_number: int | None
    position: np.ndarray  # Image Position (Patient), LPS mm
    # Position along this slice's own normal, mm. A stack shares one orientation, so this
    # is what orders its slices.
    along_normal: float
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


def slice_directions(orientation: tuple[float, ...]) -> np.ndarray:
    """3x3 matrix whose columns are the row, column and normal cosines of a slice."""
    row = np.asarray(orientation[:3], dtype=np.float64)
    col = np.asarray(orientation[3:], dtype=np.float64)
    row /= np.linalg.norm(row) or 1.0
    col -= row * (row @ col)  # orthogonalise away rounding in the stored cosines
    col /= np.linalg.norm(col) or 1.0
    return np.column_stack([row, col, np.cross(row, col)])


# --- the public entry points ----------------------------------------------------------------


def read_header(path: Path) -> SliceHeader | Problem:
    """One file's header, or the Problem that keeps the file out of every series.

    Never raises for a damaged file: one bad file must not stop a scan of thousands.
    """
    opened = _open(path)
    if isinstance(opened, Problem):
        return opened
    try:
        return _image_slice(path, opened)
    except Exception as error:  # a value no step foresaw (NaN frame count, ...) stops one file
        return Problem(UNREADABLE, f"{path}: malformed DICOM header ({error}), skipped", path)


def _image_slice(path: Path, opened: _OpenedFile) -> SliceHeader | Problem:
    raw = _RawHeader(opened.dataset, big_endian=opened.syntax == pydicom.uid.ExplicitVRBigEndian)
    try:
        position = raw.numbers("ImagePositionPatient")
        orientation = raw.numbers("ImageOrientationPatient")
    except ValueError as error:
        return Problem(UNREADABLE, f"{path}: malformed Image Position/Orientation ({error})", path)
    problem = _not_an_image_slice(path, opened, raw, position, orientation)
    if problem:
        return problem
    raw_pixels = _uncompressed_pixels(path, opened)
    if isinstance(raw_pixels, Problem):
        return raw_pixels
    header = _slice_header(path, opened, raw, position, orientation, raw_pixels)
    if isinstance(header, Problem):
        return header
    return _implausible(header) or header


def read_series_uid(path: Path) -> str:
    """Series UID of a damaged file whose header could be read, to tell its series about it."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
        return _text(ds, "SeriesInstanceUID")
    except Exception:  # best effort only
        return ""


# --- the steps of read_header, in order -----------------------------------------------------


class _OpenedFile(NamedTuple):
    dataset: Dataset
    syntax: str  # transfer syntax UID
    pixel: tuple[int, int] | None  # (offset, length) of the Pixel Data value, when found
    file_size: int

    @property
    def deflated(self) -> bool:
        return self.syntax == pydicom.uid.DeflatedExplicitVRLittleEndian


def _open(path: Path) -> _OpenedFile | Problem:
    """The parsed header and where its Pixel Data lies, from a single pass over the file."""
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
    return _OpenedFile(ds, syntax, pixel, file_size)


def _not_an_image_slice(
    path: Path, opened: _OpenedFile, raw: _RawHeader, position, orientation
) -> Problem | None:
    """Why a readable DICOM file is not one slice of an image series, or None when it is.

    A file that claims to be an image but has no Pixel Data is damaged (truncated); other
    objects without pixels (SEG, SR, ...) or multi-frame images are skipped, not errors.
    """
    modality = raw.text("Modality")
    has_image_attributes = "Rows" in opened.dataset and "Columns" in opened.dataset
    frames = int(raw.number("NumberOfFrames", 1))
    what = modality or "unknown modality"
    if opened.pixel is None and not opened.deflated:
        if (has_image_attributes and position is not None) or _is_image_class(opened.dataset):
            return Problem(TRUNCATED, f"{path}: image header but no pixel data (truncated?)", path)
        return Problem(NON_IMAGE, f"{path}: {what} object without pixel data, skipped", path)
    if position is None or orientation is None or frames != 1 or not has_image_attributes:
        reason = "multi-frame" if frames != 1 else "no Image Position/Orientation"
        return Problem(NON_IMAGE, f"{path}: {what} object ({reason}), not an image series", path)
    return None


def _uncompressed_pixels(path: Path, opened: _OpenedFile) -> tuple[int | None, int] | Problem:
    """(offset, length) of raw pixel values the reader can read directly; (None, 0) if compressed.

    Also catches a file cut short inside its Pixel Data.
    """
    offset, length = opened.pixel or (None, 0)
    if offset is not None and length != UNDEFINED_LENGTH and offset + length > opened.file_size:
        return Problem(TRUNCATED, f"{path}: pixel data cut short (truncated file), skipped", path)
    compressed = (
        opened.syntax not in UNCOMPRESSED_SYNTAXES or opened.deflated or length == UNDEFINED_LENGTH
    )
    return (None, 0) if compressed else (offset, length)


def _slice_header(
    path: Path,
    opened: _OpenedFile,
    raw: _RawHeader,
    position: list[float],
    orientation: list[float],
    raw_pixels: tuple[int | None, int],
) -> SliceHeader | Problem:
    """The SliceHeader, or a Problem when an element cannot be parsed or has the wrong length."""
    try:
        spacing = raw.numbers("PixelSpacing") or [1.0, 1.0]
        instance = raw.number("InstanceNumber", float("nan"))
        bits_allocated = raw.ushort("BitsAllocated", 16)
        fields = dict(
            sop_uid=raw.text("SOPInstanceUID"),
            instance_number=None if np.isnan(instance) else int(instance),
            rows=raw.ushort("Rows", 0),
            columns=raw.ushort("Columns", 0),
            transfer_syntax=opened.syntax,
            pixel_offset=raw_pixels[0],
            pixel_length=raw_pixels[1],
            bits_allocated=bits_allocated,
            bits_stored=raw.ushort("BitsStored", bits_allocated),
            pixel_representation=raw.ushort("PixelRepresentation", 0),
            samples_per_pixel=raw.ushort("SamplesPerPixel", 1),
            slope=raw.number("RescaleSlope", 1.0),
            intercept=raw.number("RescaleIntercept", 0.0),
            pixel_spacing=(spacing[0], spacing[1]),
            patient_id=_text(opened.dataset, "PatientID"),
            study_uid=raw.text("StudyInstanceUID"),
            series_uid=raw.text("SeriesInstanceUID"),
            modality=raw.text("Modality"),
            description=_text(opened.dataset, "SeriesDescription"),
        )
    except (TypeError, ValueError, IndexError) as error:
        return Problem(UNREADABLE, f"{path}: malformed image header ({error}), skipped", path)
    if len(orientation) != 6 or len(position) != 3:
        return Problem(UNREADABLE, f"{path}: malformed Image Position/Orientation, skipped", path)
    point = np.array(position, dtype=np.float64)
    return SliceHeader(
        path=path,
        position=point,
        along_normal=float(point @ _normal(struct.pack("6d", *orientation))),
        orientation=tuple(orientation),
        **fields,
    )


def _implausible(header: SliceHeader) -> Problem | None:
    """A Problem when the geometry or pixel length cannot describe a real image, else None."""
    path = header.path
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
    return None


# --- low-level helpers ----------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _normal(orientation_bits: bytes) -> np.ndarray:
    """Slice normal of an orientation given as six packed doubles (read-only).

    All slices of a stack share their orientation, so this is computed once per stack, not
    per file. The key is the exact bits: -0.0 equals 0.0 yet gives a differently signed normal.
    """
    normal = slice_directions(struct.unpack("6d", orientation_bits))[:, 2]
    normal.flags.writeable = False
    return normal


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


def _pixel_element(fp, transfer_syntax: str) -> tuple[int, int] | None:
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
