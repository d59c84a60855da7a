"""Slicer's DICOM database as worklist rows; loading a series; the identity of a loaded series.

The database (``slicer.dicomDatabase``, a ``ctkDICOMDatabase``) lists patients, their studies
and their series; each series' attributes are read from one of its files with
``fileValue(file, "gggg,eeee")``, the tags of :data:`deepliver.annotation.worklist.TAGS`.
"""

from __future__ import annotations

from deepliver.annotation.worklist import TAGS, DicomSeriesRow, row_from_tags
from deepliver.io.series_identity import SeriesIdentity
from deepliver.volume import Grid
from DeepLiverSlicer.dicom_identity import SlicerDicomIdentity


def identity_from_parts(
    slicer_identity: SlicerDicomIdentity, row: DicomSeriesRow | None, grid: Grid
) -> SeriesIdentity:
    """The store's identity of a loaded series: UIDs and SOP UIDs from Slicer, patient,
    modality and description from the database row, the fingerprint from the volume's grid."""
    if len(slicer_identity.sop_uids) != grid.shape[0]:
        raise ValueError(
            f"series {slicer_identity.series_uid}: {len(slicer_identity.sop_uids)} SOP Instance "
            f"UIDs for {grid.shape[0]} slices; load it as one volume from the DICOM database"
        )
    if row is not None and row.series_uid != slicer_identity.series_uid:
        raise ValueError(
            f"the loaded volume is series {slicer_identity.series_uid}, not {row.series_uid}"
        )
    return SeriesIdentity.build(
        patient_id=row.patient_id if row else "",
        study_uid=slicer_identity.study_uid or (row.study_uid if row else ""),
        series_uid=slicer_identity.series_uid,
        modality=row.modality if row else "",
        description=row.series_description if row else "",
        sop_uids=slicer_identity.sop_uids,
        grid=grid,
    )


# --- Slicer ------------------------------------------------------------------------------


def database_rows(database=None) -> list[DicomSeriesRow]:
    """One row per series of the DICOM database (``slicer.dicomDatabase`` by default)."""
    import slicer

    database = database or slicer.dicomDatabase
    if database is None or not database.isOpen:
        return []
    rows = []
    for patient in database.patients():
        for study in database.studiesForPatient(patient):
            for series in database.seriesForStudy(study):
                rows.append(series_row(series, database))
    return [row for row in rows if row is not None]


def series_row(series_uid: str, database=None) -> DicomSeriesRow | None:
    """The row of one series (None when the database has no file for it)."""
    import slicer

    database = database or slicer.dicomDatabase
    files = database.filesForSeries(series_uid)
    if not files:
        return None
    values = {tag: database.fileValue(files[0], tag) for tag in TAGS.values()}
    values[TAGS["series_uid"]] = values[TAGS["series_uid"]] or series_uid
    return row_from_tags(values, len(files))


def load_series(series_uid: str):
    """Load a series from the DICOM database; returns its scalar volume node."""
    import slicer
    from DICOMLib import DICOMUtils

    from DeepLiverSlicer.dicom_identity import dicom_identity

    node_ids = DICOMUtils.loadSeriesByUID([series_uid])
    volumes = [
        node
        for node in (slicer.mrmlScene.GetNodeByID(node_id) for node_id in node_ids)
        if node is not None and node.IsA("vtkMRMLScalarVolumeNode")
    ]
    if not volumes:
        raise RuntimeError(f"series {series_uid} did not load as a volume (see the error log)")
    for node in volumes:
        identity = dicom_identity(node)
        if identity is not None and identity.series_uid == series_uid:
            return node
    return volumes[0]


def loaded_series_identity(volume_node, row: DicomSeriesRow | None) -> SeriesIdentity:
    """The :class:`SeriesIdentity` of a volume loaded from the DICOM database."""
    from DeepLiverSlicer.dicom_identity import dicom_identity
    from DeepLiverSlicer.volumes import volume_from_node

    identity = dicom_identity(volume_node)
    if identity is None:
        raise ValueError(f"{volume_node.GetName()} was not loaded from the DICOM database")
    grid = volume_from_node(volume_node, copy=False).grid
    return identity_from_parts(identity, row, grid)
