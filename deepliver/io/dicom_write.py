"""Write a Volume as a real CT Image Storage series (one file per slice), for phantoms and tests.

Voxels are stored as integer HU: float volumes are rounded to the nearest integer. When every
value is at least -1024 the pixels are stored unsigned with Rescale Intercept -1024 (what most
scanners write); otherwise signed with intercept 0. Geometry comes from the volume's grid, so
oblique and anisotropic grids round-trip through any DICOM reader.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds

from deepliver.errors import DeepLiverError
from deepliver.io.series_identity import SeriesIdentity
from deepliver.progress import Progress
from deepliver.volume import Grid, Volume

UNSIGNED_INTERCEPT = -1024
# Abdomen soft-tissue window: what a radiologist looks at the liver with.
WINDOW_CENTER = 50
WINDOW_WIDTH = 400


def _ds(value: float) -> str:
    """A decimal string that fits DICOM's 16 characters with as much precision as possible."""
    return format_number_as_ds(float(value))


def _uid(uid_entropy: str | None, *parts: str) -> str:
    if uid_entropy is None:
        return generate_uid()
    return generate_uid(entropy_srcs=[str(uid_entropy), *parts])


def _stored_pixels(array: np.ndarray) -> tuple[np.ndarray, int, int]:
    """(stored little-endian pixels, pixel representation, rescale intercept)."""
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise DeepLiverError(
                "cannot write a CT series: the volume holds NaN or infinite values"
            )
        array = np.rint(array)
    lowest, highest = float(array.min()), float(array.max())
    if lowest >= UNSIGNED_INTERCEPT and highest - UNSIGNED_INTERCEPT <= 65535:
        stored = (array.astype(np.int32) - UNSIGNED_INTERCEPT).astype("<u2")
        return stored, 0, UNSIGNED_INTERCEPT
    if lowest >= -32768 and highest <= 32767:
        return array.astype("<i2"), 1, 0
    raise DeepLiverError(
        f"cannot write a CT series: values {lowest:g}..{highest:g} do not fit 16-bit CT pixels"
    )


def _as_read_order(grid: Grid) -> tuple[np.ndarray, np.ndarray, bool]:
    """Origin and direction a DICOM reader will find, and whether it sees the slices reversed.

    Readers take the slice normal as row x column cosine; a left-handed grid is read back with
    its slices in reverse order.
    """
    direction = grid.direction.copy()
    reversed_order = float(np.linalg.det(direction)) < 0
    if reversed_order:
        last = grid.index_to_physical((0, 0, grid.shape[0] - 1))
        direction[:, 2] = -direction[:, 2]
        return last, direction, True
    return grid.origin.copy(), direction, False


def write_ct_series(
    volume: Volume,
    folder: Path,
    *,
    patient_id: str = "PHANTOM",
    patient_name: str = "Phantom^DeepLiver",
    study_uid: str | None = None,
    series_uid: str | None = None,
    description: str = "",
    uid_entropy: str | None = None,
    progress: Progress | None = None,
) -> SeriesIdentity:
    """Write ``volume`` to ``folder`` as IM00001.dcm, IM00002.dcm, ... (slice k -> file k+1).

    Returns the :class:`SeriesIdentity` that :func:`deepliver.io.dicom_read.read_series` will
    report for these files (same SOP UID order and fingerprint). With ``uid_entropy`` every UID
    is derived from it, so the same phantom seed always gives the same UIDs. ``progress`` is
    told as each slice starts.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    grid = volume.grid
    stored, pixel_representation, intercept = _stored_pixels(np.asarray(volume.array))
    study_uid = study_uid or _uid(uid_entropy, "study")
    series_uid = series_uid or _uid(uid_entropy, "series", study_uid)
    frame_uid = _uid(uid_entropy, "frame-of-reference", series_uid)
    now = datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    n_slices, rows, columns = grid.shape
    normal = grid.direction[:, 2]
    spacing_z = grid.spacing[2]
    orientation = [_ds(v) for v in (*grid.direction[:, 0], *grid.direction[:, 1])]
    pixel_spacing = [_ds(grid.spacing[1]), _ds(grid.spacing[0])]

    sop_uids = []
    for k in range(n_slices):
        if progress:
            progress("writing DICOM", k / n_slices)
        sop_uid = _uid(uid_entropy, "sop", series_uid, str(k)) if uid_entropy else generate_uid()
        sop_uids.append(sop_uid)
        position = grid.origin + k * spacing_z * normal
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
        ds = Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop_uid
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = date
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = time
        ds.AccessionNumber = ""
        ds.Modality = "CT"
        ds.Manufacturer = "DeepLiver"
        ds.ReferringPhysicianName = ""
        ds.StudyDescription = "DeepLiver"
        ds.SeriesDescription = description
        ds.PatientName = patient_name
        ds.PatientID = patient_id
        ds.PatientBirthDate = ""
        ds.PatientSex = ""
        ds.SliceThickness = _ds(spacing_z)
        ds.KVP = ""
        ds.SpacingBetweenSlices = _ds(spacing_z)
        ds.PatientPosition = "HFS"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.StudyID = "1"
        ds.SeriesNumber = 1
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [_ds(v) for v in position]
        ds.ImageOrientationPatient = orientation
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ""
        ds.SliceLocation = _ds(float(position @ normal))
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = rows
        ds.Columns = columns
        ds.PixelSpacing = pixel_spacing
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = pixel_representation
        ds.WindowCenter = WINDOW_CENTER
        ds.WindowWidth = WINDOW_WIDTH
        ds.RescaleIntercept = intercept
        ds.RescaleSlope = 1
        ds.RescaleType = "HU"
        ds.PixelData = stored[k].tobytes()
        ds["PixelData"].VR = "OW"
        pydicom.dcmwrite(folder / f"IM{k + 1:05d}.dcm", ds, enforce_file_format=True)

    origin, direction, reversed_order = _as_read_order(grid)
    read_grid = Grid(grid.shape, origin, grid.spacing, direction)
    return SeriesIdentity.build(
        patient_id=patient_id,
        study_uid=study_uid,
        series_uid=series_uid,
        modality="CT",
        description=description,
        sop_uids=sop_uids[::-1] if reversed_order else sop_uids,
        grid=read_grid,
    )
