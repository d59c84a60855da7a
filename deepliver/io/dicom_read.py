"""Read one DICOM image series into a Volume in HU, fast and without doubling memory.

One header pass (:func:`deepliver.io.dicom_scan.scan`) finds the slices, their order along the
slice normal and, for uncompressed files, the byte offset of the pixel values. The output array
is allocated once; each uncompressed slice is read straight into its row and rescaled in place.
Compressed slices (JPEG 2000, JPEG-LS, RLE, ...) are decoded by pydicom's pixel handlers.

Values are HU (Rescale Slope/Intercept applied), int16 when every value fits, else float32.

Gaps: a stack with missing slices is refused unless ``allow_gaps``. With ``allow_gaps`` the
volume keeps the true slice spacing and the missing slices are filled with the lowest HU of
the series (air or scanner padding), so distances and volumes stay right and the gap shows as
a blank slice instead of silently joining slices that are not neighbours.

Duplicates (two files at one position) are read once when their voxels are identical (logged);
if they differ the series is refused, since no rule can tell which one the scanner meant.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pydicom

from deepliver.errors import DeepLiverError
from deepliver.io.dicom_header import SliceHeader
from deepliver.io.dicom_scan import DUPLICATE_TOLERANCE_MM, ScanReport, SeriesInfo, scan
from deepliver.io.problems import BLOCKING_KINDS, MISSING_SLICES
from deepliver.io.series_identity import SeriesIdentity
from deepliver.progress import Progress
from deepliver.volume import Grid, Volume

logger = logging.getLogger(__name__)

INT16_MIN, INT16_MAX = -32768, 32767
# Reading files overlaps well with the in-place rescale; more threads than this do not help.
READ_THREADS = 4


class _NeedsFloat(Exception):
    """A slice's HU values do not fit int16: the series is read again as float32."""


def _fits_int16(header: SliceHeader) -> bool:
    return header.slope == 1.0 and float(header.intercept).is_integer()


def _fast_path(header: SliceHeader) -> bool:
    return (
        header.pixel_offset is not None
        and header.bits_allocated == 16
        and header.samples_per_pixel == 1
        and header.pixel_length >= header.rows * header.columns * 2
    )


def _read_raw(header: SliceHeader, into: np.ndarray) -> np.ndarray:
    """Stored pixel values of an uncompressed 16-bit slice, read into ``into`` (reinterpreted)."""
    raw = into.view(np.int16 if header.pixel_representation else np.uint16)
    with open(header.path, "rb", buffering=0) as fp:
        fp.seek(header.pixel_offset)
        count = fp.readinto(memoryview(raw).cast("B"))
    if count != raw.nbytes:
        raise DeepLiverError(f"{header.path}: pixel data cut short ({count} of {raw.nbytes} bytes)")
    if header.transfer_syntax == pydicom.uid.ExplicitVRBigEndian:
        raw.byteswap(inplace=True)
    unused = 16 - header.bits_stored
    if 0 < unused < 16:
        if header.pixel_representation:  # sign-extend from the top stored bit
            np.left_shift(raw, unused, out=raw)
            np.right_shift(raw, unused, out=raw)
        else:
            np.bitwise_and(raw, (1 << header.bits_stored) - 1, out=raw)
    return raw


def _decode(header: SliceHeader) -> np.ndarray:
    """Stored pixel values through pydicom's handlers (compressed or unusual layouts)."""
    try:
        pixels = pydicom.dcmread(header.path).pixel_array
    except Exception as error:  # name the file, whatever the decoder raises
        raise DeepLiverError(
            f"{header.path}: cannot decode pixel data (transfer syntax {header.transfer_syntax}):"
            f" {error}"
        ) from error
    if pixels.shape != (header.rows, header.columns):
        raise DeepLiverError(
            f"{header.path}: expected one {header.rows}x{header.columns} grey image,"
            f" got pixel array of shape {pixels.shape}"
        )
    return pixels


def _load_int16(header: SliceHeader, row: np.ndarray) -> tuple[float, float]:
    """HU of one slice into an int16 ``row``; returns its (min, max) HU."""
    intercept = int(header.intercept)
    if _fast_path(header):
        raw = _read_raw(header, row)
        low, high = int(raw.min()), int(raw.max())
        if low + intercept < INT16_MIN or high + intercept > INT16_MAX:
            raise _NeedsFloat
        if intercept:  # modular add on the stored type gives the exact int16 bit pattern
            np.add(raw, np.array(intercept).astype(raw.dtype), out=raw)
        return low + intercept, high + intercept
    pixels = _decode(header)
    low, high = int(pixels.min()), int(pixels.max())
    if low + intercept < INT16_MIN or high + intercept > INT16_MAX:
        raise _NeedsFloat
    np.add(pixels, intercept, out=row, casting="unsafe", dtype=np.int32)
    return low + intercept, high + intercept


def _load_float32(header: SliceHeader, row: np.ndarray) -> tuple[float, float]:
    """HU of one slice into a float32 ``row``; returns its (min, max) HU."""
    if _fast_path(header):
        pixels = _read_raw(header, np.empty(row.shape, dtype=np.int16))
    else:
        pixels = _decode(header)
    np.multiply(pixels, np.float32(header.slope), out=row, casting="unsafe", dtype=np.float32)
    row += np.float32(header.intercept)
    return float(row.min()), float(row.max())


def _slice_indices(info: SeriesInfo, kept: list[SliceHeader]) -> list[int]:
    first = kept[0].along_normal
    spacing = info.spacing[2]
    return [int(round((h.along_normal - first) / spacing)) for h in kept]


def _split_duplicates(info: SeriesInfo) -> tuple[list[SliceHeader], list[tuple[int, SliceHeader]]]:
    """(one slice per position, [(position number, extra file at that position)])."""
    kept: list[SliceHeader] = []
    extra: list[tuple[int, SliceHeader]] = []
    for header in info.slices:
        if kept and abs(header.along_normal - kept[-1].along_normal) <= DUPLICATE_TOLERANCE_MM:
            extra.append((len(kept) - 1, header))
        else:
            kept.append(header)
    return kept, extra


def _fill(kept, indices, shape, dtype, loader, progress: Progress | None) -> np.ndarray:
    """The output volume, allocated once; gap slices get the lowest HU of the series."""
    out = np.empty(shape, dtype=dtype)
    ranges = []
    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        for value_range in pool.map(loader, kept, [out[k] for k in indices]):
            ranges.append(value_range)
            if progress:
                progress("reading DICOM", len(ranges) / len(kept))
    present = np.zeros(shape[0], dtype=bool)
    present[indices] = True
    out[~present] = min(low for low, _ in ranges)
    return out


def _check_duplicates(out: np.ndarray, indices, extra, loader) -> None:
    for position, header in extra:
        row = np.empty(out.shape[1:], dtype=out.dtype)
        loader(header, row)
        if not np.array_equal(row, out[indices[position]]):
            raise DeepLiverError(
                f"{header.path}: duplicate slice at {header.along_normal:.3f} mm differs from"
                " the other file at that position; refusing to guess which one is right"
            )
        logger.warning("%s: identical duplicate slice ignored", header.path)


def read_stack(
    info: SeriesInfo, allow_gaps: bool = False, progress: Progress | None = None
) -> tuple[Volume, SeriesIdentity]:
    """Voxels (HU) and identity of one stack found by :func:`scan`; ``progress`` per slice."""
    blocking = [p for p in info.problems if p.kind in BLOCKING_KINDS]
    if blocking:
        raise DeepLiverError(f"cannot read {info.describe()} as a volume: {blocking[0].message}")
    if info.missing_positions and not allow_gaps:
        message = next(p.message for p in info.problems if p.kind == MISSING_SLICES)
        folder = info.slices[0].path.parent
        raise DeepLiverError(
            f"{folder}: {message}; refusing to read it as one volume (`deepliver convert"
            " --allow-gaps` writes it with the gaps filled at the series' lowest HU)"
        )
    for problem in info.problems:
        logger.warning("%s", problem.message)

    kept, extra = _split_duplicates(info)
    indices = _slice_indices(info, kept)
    shape = (indices[-1] + 1, info.size[1], info.size[0])
    loader = _load_int16 if all(_fits_int16(h) for h in info.slices) else _load_float32
    try:
        dtype = np.int16 if loader is _load_int16 else np.float32
        out = _fill(kept, indices, shape, dtype, loader, progress)
    except _NeedsFloat:
        out = None  # leave the except block first so the int16 attempt is freed
    if out is None:
        loader = _load_float32
        out = _fill(kept, indices, shape, np.float32, loader, progress)
    _check_duplicates(out, indices, extra, loader)

    grid = Grid(shape, info.origin, info.spacing, np.reshape(info.direction, (3, 3)))
    identity = SeriesIdentity.build(
        patient_id=info.patient_id,
        study_uid=info.study_uid,
        series_uid=info.series_uid,
        modality=info.modality,
        description=info.description,
        sop_uids=[h.sop_uid for h in kept],
        grid=grid,
    )
    return Volume(out, grid), identity


def choose_series(report: ScanReport, path: Path | str, series_uid: str | None) -> SeriesInfo:
    """The stack named by ``series_uid`` (a key from the scan), or the only one there is."""
    listing = "; ".join(s.describe() for s in report.series)
    if not report.series:
        reasons = "; ".join(p.message for p in report.problems[:3]) or "no files in it"
        raise DeepLiverError(f"{path}: no readable image series found ({reasons})")
    if series_uid is None:
        if len(report.series) > 1:
            raise DeepLiverError(
                f"{path} holds {len(report.series)} image series; choose one with --series:"
                f" {listing}"
            )
        return report.series[0]
    chosen = report.find(series_uid)
    if chosen is None:
        raise DeepLiverError(f"{path}: no series {series_uid}; found: {listing}")
    return chosen


def read_series(
    path: Path | str,
    series_uid: str | None = None,
    allow_gaps: bool = False,
    progress: Progress | None = None,
) -> tuple[Volume, SeriesIdentity]:
    """Read the image series under ``path`` (a folder or one file) as HU on its LPS grid.

    ``series_uid`` picks a series when the folder holds several; it is a key of the scan:
    the Series Instance UID, or ``UID#2``, ``UID#3`` for extra stacks split off one UID.
    """
    report = scan(path)
    return read_stack(choose_series(report, path, series_uid), allow_gaps, progress)
