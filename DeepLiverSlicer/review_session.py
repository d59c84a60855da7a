"""A review session in Slicer: the store, the worklist, the loaded series and its segmentation.

The Review module's logic is this class; it holds the state between button presses and calls
the core (:mod:`deepliver.annotation.review`, :mod:`deepliver.annotation.worklist`, the store)
and the glue. Nothing here is a widget.
"""

from __future__ import annotations

from pathlib import Path

from deepliver.annotation import review as rules
from deepliver.annotation import worklist as wl
from DeepLiverSlicer import dicom_database, segmentations
from DeepLiverSlicer import review as glue
from DeepLiverSlicer.volumes import volume_from_node


class ReviewSession:
    def __init__(self) -> None:
        self.store = None
        self.rows: list[wl.DicomSeriesRow] = []
        self.entries: list[wl.WorklistEntry] = []
        self.stored: set[str] = set()  # series UIDs the store has a record of
        self.identity = None  # SeriesIdentity of the loaded series
        self.volume_node = None
        self.segmentation_node = None

    @property
    def series_uid(self) -> str | None:
        return self.identity.series_uid if self.identity else None

    # --- store and worklist -----------------------------------------------------------

    def open_store(self, folder) -> None:
        """Use the store in ``folder`` (none for an empty path)."""
        from deepliver.annotation.store import AnnotationStore

        self.store = None
        if str(folder or "").strip():
            self.store = AnnotationStore(Path(folder))

    def refresh(self, reread_database: bool = False) -> None:
        """Join the DICOM database's series with the store's statuses."""
        if reread_database or not self.rows:
            self.rows = dicom_database.database_rows()
        statuses = self.store.series() if self.store else ()
        self.stored = {s.identity.series_uid for s in statuses}
        self.entries = wl.build_worklist(self.rows, statuses)

    def _row(self, series_uid: str):
        row = next((row for row in self.rows if row.series_uid == series_uid), None)
        return row or dicom_database.series_row(series_uid)

    # --- one series -------------------------------------------------------------------

    def close_series(self) -> None:
        """Take the loaded series, its segmentation and its boxes out of the scene."""
        glue.remove_rois()
        glue.remove_nodes(self.segmentation_node, self.volume_node)
        self.identity = self.volume_node = self.segmentation_node = None

    def load_series(self, series_uid: str) -> str:
        """Load the series and restore its latest revision; returns what was restored."""
        if self.store is None:
            raise ValueError("choose the store folder first")
        self.close_series()
        self.volume_node = dicom_database.load_series(series_uid)
        self.identity = dicom_database.loaded_series_identity(
            self.volume_node, self._row(series_uid)
        )
        self.refresh()  # the store may have changed since the worklist was read
        choice = rules.restore_choice(self.store, series_uid, series_uid in self.stored)
        # The identity as loaded now: a revision drawn on other files is refused.
        segmentation = self.store.load(choice.revision, self.identity) if choice.revision else None
        segmentation = rules.ordered(segmentation or rules.empty_review(self.grid))
        self.segmentation_node = segmentations.node_from_segmentation(
            segmentation, self.volume_node, f"{self.volume_node.GetName()} annotation"
        )
        boxes = getattr(choice.revision, "boxes", ()) or ()
        for record in rules.boxes_for(boxes, [s.name for s in segmentation.segments]):
            glue.roi_for_box(record)
        return choice.describe()

    @property
    def grid(self):
        return volume_from_node(self.volume_node, copy=False).grid

    def add_tumor(self) -> str:
        """A new empty "Tumor n" segment; returns its name."""
        segment = rules.new_segment(segmentations.segment_names(self.segmentation_node))
        segmentations.add_segment(self.segmentation_node, segment)
        return segment.name

    def delete_segment(self, name: str) -> None:
        segmentations.remove_segment(self.segmentation_node, name)
        glue.remove_rois(name)

    def _corners(self, name: str):
        mask = segmentations.segment_mask(self.segmentation_node, name, self.volume_node)
        return rules.mask_box(self.grid, mask)

    def box_around_segment(self, name: str):
        """The segment's ROI fitted around its voxels; None when the segment is empty."""
        corners = self._corners(name)
        if corners is None:
            return None
        return glue.roi_for_box(rules.box_record(name, *corners))

    def jump_to_segment(self, name: str) -> bool:
        """Centre the slice views on the segment; False when it is empty."""
        corners = self._corners(name)
        if corners is not None:
            glue.jump_to((corners[0] + corners[1]) / 2.0)
        return corners is not None

    def current_segmentation(self):
        return segmentations.segmentation_from_node(self.segmentation_node, self.volume_node)

    def save(self, status: str, reader: str, comment: str = "") -> str:
        """A new revision of the loaded series; returns a line for the status label."""
        if self.identity is None:
            raise ValueError("load a series first")
        if not (reader or "").strip():
            raise ValueError("enter your name as reader before saving")
        segmentation = self.current_segmentation()
        boxes = glue.box_records([s.name for s in segmentation.segments])
        revision = self.store.save(
            self.identity,
            segmentation.grid,
            segmentation,
            reader=reader.strip(),
            status=status,
            boxes=boxes,
            comment=comment,
        )
        self.refresh()
        number = getattr(revision, "number", None)
        which = f"revision {number}" if number is not None else "a new revision"
        return f"Saved {which} ({status})."
