"""The DICOM identity of a volume loaded in Slicer: Study / Series Instance UIDs, SOP UIDs.

Slicer's DICOM volume plugin records the series UID on the volume's subject hierarchy item
(UID name "DICOM"), the study UID on its parent study item, and the SOP Instance UIDs, one per
slice in k order, in the node attribute ``DICOM.instanceUIDs``. With the node's grid they give
the same fingerprint as :func:`deepliver.io.series_identity.series_fingerprint` computes when
the core reads the files, so an annotation can be tied to its series inside Slicer too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from deepliver.volume import Grid

UID_NAME = "DICOM"  # vtkMRMLSubjectHierarchyConstants::GetDICOMUIDName()
INSTANCE_UIDS_ATTRIBUTE = "DICOM.instanceUIDs"


@dataclass(frozen=True)
class SlicerDicomIdentity:
    study_uid: str
    series_uid: str
    sop_uids: tuple[str, ...] = field(default_factory=tuple)

    def fingerprint(self, grid: Grid) -> str | None:
        """The core's series fingerprint, or None without one SOP UID per slice."""
        from deepliver.io.series_identity import series_fingerprint

        if len(self.sop_uids) != grid.shape[0]:
            return None
        return series_fingerprint(self.sop_uids, grid)

    def describe(self) -> str:
        slices = f", {len(self.sop_uids)} SOP instances" if self.sop_uids else ""
        return f"Study {self.study_uid or '(unknown)'} / Series {self.series_uid}{slices}"


def parse_instance_uids(attribute: str | None) -> tuple[str, ...]:
    """The SOP Instance UIDs in a ``DICOM.instanceUIDs`` attribute (space-separated)."""
    return tuple((attribute or "").split())


def identity_from_values(
    study_uid: str | None, series_uid: str | None, instance_uids: str | None
) -> SlicerDicomIdentity | None:
    """The identity from the raw values Slicer holds; None for a volume not loaded from DICOM."""
    if not series_uid:
        return None
    return SlicerDicomIdentity(study_uid or "", series_uid, parse_instance_uids(instance_uids))


# --- Slicer ------------------------------------------------------------------------------


def dicom_identity(volume_node) -> SlicerDicomIdentity | None:
    """The DICOM identity of a loaded volume node, or None when it did not come from DICOM."""
    import slicer

    sh_node = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
    item = sh_node.GetItemByDataNode(volume_node)
    if not item:
        return None
    series_uid = sh_node.GetItemUID(item, UID_NAME)
    parent = sh_node.GetItemParent(item)
    study_uid = sh_node.GetItemUID(parent, UID_NAME) if parent else ""
    return identity_from_values(
        study_uid, series_uid, volume_node.GetAttribute(INSTANCE_UIDS_ATTRIBUTE)
    )
