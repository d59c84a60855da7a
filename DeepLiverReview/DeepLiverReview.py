"""DeepLiverReview: annotate CT series after series: worklist from the DICOM database, Segment
Editor, revisions saved to the annotation store."""

import os
import sys
import tempfile
from pathlib import Path

import qt
import slicer
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

# A source checkout keeps `deepliver` and `DeepLiverSlicer` one folder up; the extension build
# installs them beside this file.
try:
    import deepliver  # noqa: F401
    import DeepLiverSlicer  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from deepliver.annotation import worklist as wl
from DeepLiverSlicer import STORE_FOLDER_SETTING, environment_problem, segmentations
from DeepLiverSlicer import review as glue
from DeepLiverSlicer.module_widget import ParameterNodeWidgetMixin
from DeepLiverSlicer.review_session import ReviewSession

SETTINGS = {"store": STORE_FOLDER_SETTING, "reader": "DeepLiver/Reader"}


class DeepLiverReview(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("DeepLiver Review")
        self.parent.categories = ["DeepLiver"]
        self.parent.dependencies = ["Segmentations", "Terminologies", "SubjectHierarchy", "DICOM"]
        self.parent.contributors = ["DeepLiver developers"]
        self.parent.helpText = _(
            "Annotate CT series one after the other: pick a series from the worklist (Slicer's "
            "DICOM database with each series' status), outline the liver and each tumor with the "
            "Segment Editor, save a draft or complete it, go to the next series. Every save is a "
            "new revision in the annotation store. Shortcuts: {keys}. See the "
            '<a href="https://github.com/deepliver/SlicerDeepLiver">DeepLiver documentation</a>.'
        ).format(keys=glue.shortcut_help())
        self.parent.acknowledgementText = _(
            "DeepLiver builds on 3D Slicer, SimpleITK, pydicom, PyTorch and MONAI. "
            "Its review workflow follows mpReview (SlicerProstate)."
        )


@parameterNodeWrapper
class DeepLiverReviewParameterNode:
    reader: str
    volume: vtkMRMLScalarVolumeNode
    segmentation: vtkMRMLSegmentationNode


class DeepLiverReviewWidget(
    ParameterNodeWidgetMixin, ScriptedLoadableModuleWidget, VTKObservationMixin
):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._problem = None
        self._shown = []  # worklist entries in table order

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        self.ui = self.loadModuleUI("DeepLiverReview")
        self.logic = DeepLiverReviewLogic()
        self._problem = environment_problem()
        self.editor = glue.new_editor()
        self.ui.editorCollapsibleButton.layout().addWidget(self.editor)
        table = self.ui.worklistTable
        table.setColumnCount(len(wl.COLUMNS))
        table.setHorizontalHeaderLabels(list(wl.COLUMNS))
        table.setSelectionBehavior(qt.QAbstractItemView.SelectRows)
        table.setSelectionMode(qt.QAbstractItemView.SingleSelection)
        table.setEditTriggers(qt.QAbstractItemView.NoEditTriggers)
        self.ui.storeFolderSelector.currentPath = qt.QSettings().value(SETTINGS["store"], "")
        self.ui.shortcutsLabel.text = glue.shortcut_help()
        connections = [
            (self.ui.storeFolderSelector, "currentPathChanged(QString)", self.onStoreChanged),
            (self.ui.refreshButton, "clicked(bool)", self.onRefresh),
            (self.ui.ctOnlyCheckBox, "toggled(bool)", self._fillTable),
            (self.ui.notDoneCheckBox, "toggled(bool)", self._fillTable),
            (self.ui.searchLineEdit, "textChanged(QString)", self._fillTable),
            (self.ui.worklistTable, "cellDoubleClicked(int,int)", self.onLoad),
            (self.ui.loadButton, "clicked(bool)", self.onLoad),
            (self.ui.nextButton, "clicked(bool)", self.onNext),
            (self.ui.addTumorButton, "clicked(bool)", self.onAddTumor),
            (self.ui.deleteSegmentButton, "clicked(bool)", self.onDelete),
            (self.ui.boxButton, "clicked(bool)", self.onBox),
            (self.ui.jumpButton, "clicked(bool)", self.onJump),
            (self.ui.outlineCheckBox, "toggled(bool)", self.onOutlines),
            (self.ui.fillCheckBox, "toggled(bool)", self.onOutlines),
            (self.ui.saveDraftButton, "clicked(bool)", lambda: self.onSave(wl.DRAFT)),
            (self.ui.completeButton, "clicked(bool)", lambda: self.onSave(wl.COMPLETE)),
            (self.ui.saveNextButton, "clicked(bool)", self.onSaveAndNext),
        ]
        for widget, signal, slot in connections:
            widget.connect(signal, slot)
        actions = {
            "save draft": lambda: self.onSave(wl.DRAFT),
            "complete": lambda: self.onSave(wl.COMPLETE),
            "save and next": self.onSaveAndNext,
        }
        self._shortcuts = glue.install_shortcuts(self.parent, actions)
        self.initializeParameterNode()
        if self._problem:
            self.ui.statusLabel.text = self._problem
        else:
            self.onStoreChanged(self.ui.storeFolderSelector.currentPath)

    def enter(self) -> None:
        ParameterNodeWidgetMixin.enter(self)
        glue.editor_enter(self.editor)

    def exit(self) -> None:
        glue.editor_exit(self.editor)
        ParameterNodeWidgetMixin.exit(self)

    def cleanup(self) -> None:
        self.removeObservers()

    def onSceneStartClose(self, caller, event) -> None:
        ParameterNodeWidgetMixin.onSceneStartClose(self, caller, event)
        self.editor.setSegmentationNode(None)
        self.logic.identity = self.logic.volume_node = self.logic.segmentation_node = None

    def setDefaultParameters(self, parameterNode) -> None:
        if not parameterNode.reader:
            parameterNode.reader = str(qt.QSettings().value(SETTINGS["reader"], ""))

    def _update(self, caller=None, event=None) -> None:
        node = self._parameterNode
        if node and node.reader:
            qt.QSettings().setValue(SETTINGS["reader"], node.reader)
        loaded = bool(node and node.segmentation and self.logic.identity) and not self._problem
        for button in (
            self.ui.addTumorButton,
            self.ui.deleteSegmentButton,
            self.ui.boxButton,
            self.ui.jumpButton,
            self.ui.saveDraftButton,
            self.ui.completeButton,
            self.ui.saveNextButton,
        ):
            button.enabled = loaded
        self.ui.loadButton.enabled = self.logic.store is not None and not self._problem

    # --- worklist ---------------------------------------------------------------------

    def onStoreChanged(self, path) -> None:
        qt.QSettings().setValue(SETTINGS["store"], str(path))
        try:
            self.logic.open_store(path)
            self.logic.refresh(reread_database=True)
        except Exception as error:  # a path being typed, a folder not readable: say so
            self.ui.statusLabel.text = _("Store: {error}").format(error=error)
        self._fillTable()

    def onRefresh(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not read the worklist."), waitCursor=True):
            self.logic.refresh(reread_database=True)
        self._fillTable()

    def _filter(self) -> wl.WorklistFilter:
        return wl.WorklistFilter(
            self.ui.ctOnlyCheckBox.checked,
            self.ui.notDoneCheckBox.checked,
            self.ui.searchLineEdit.text,
        )

    def _fillTable(self, *args) -> None:
        self._shown = self._filter().apply(self.logic.entries)
        table = self.ui.worklistTable
        table.setRowCount(len(self._shown))
        for row, entry in enumerate(self._shown):
            for column, text in enumerate(entry.cells()):
                table.setItem(row, column, qt.QTableWidgetItem(text))
            if entry.series_uid == self.logic.series_uid:
                table.selectRow(row)
        table.resizeColumnsToContents()
        self.ui.worklistSummaryLabel.text = wl.summary_text(self._shown, len(self.logic.entries))
        self._update()

    def _selectedEntry(self):
        rows = {item.row() for item in self.ui.worklistTable.selectedItems()}
        return self._shown[min(rows)] if rows else None

    def _load(self, entry) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not load the series."), waitCursor=True):
            if entry is None:
                raise ValueError(_("select a series in the worklist"))
            message = self.logic.load_series(entry.series_uid)
            self._parameterNode.volume = self.logic.volume_node
            self._parameterNode.segmentation = self.logic.segmentation_node
            glue.show_in_editor(self.editor, self.logic.segmentation_node, self.logic.volume_node)
            glue.select_segment(self.editor, self.logic.segmentation_node, "Liver")
            self.onOutlines()
            self.ui.seriesLabel.text = f"{entry.row.patient_text}, {entry.row.series_text}"
            self.ui.statusLabel.text = message
            self._fillTable()

    def onLoad(self, *args) -> None:
        self._load(self._selectedEntry())

    def onNext(self) -> None:
        if self.logic.identity and not slicer.util.confirmOkCancelDisplay(
            _("Go to the next series? Edits not saved are lost.")
        ):
            return
        self._loadNext()

    def _loadNext(self) -> None:
        entry = wl.next_to_do(self._shown, self.logic.series_uid)
        if entry is None:
            self.ui.statusLabel.text = _("No other series left to do in this list.")
            return
        self._load(entry)

    # --- structures -------------------------------------------------------------------

    def _current(self) -> str:
        name = glue.current_segment_name(self.editor, self.logic.segmentation_node)
        if not name:
            raise ValueError(_("select a segment first"))
        return name

    def onAddTumor(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not add a tumor.")):
            name = self.logic.add_tumor()
            glue.select_segment(self.editor, self.logic.segmentation_node, name)

    def onDelete(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not delete the segment.")):
            name = self._current()
            if slicer.util.confirmOkCancelDisplay(_("Delete {name}?").format(name=name)):
                self.logic.delete_segment(name)

    def onBox(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not make the box."), waitCursor=True):
            name = self._current()
            if self.logic.box_around_segment(name) is None:
                glue.place_roi(name)
                self.ui.statusLabel.text = _("{name} is empty: draw its box in a view.").format(
                    name=name
                )

    def onJump(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not jump to the segment.")):
            if not self.logic.jump_to_segment(self._current()):
                self.ui.statusLabel.text = _("The segment is empty.")

    def onOutlines(self, *args) -> None:
        glue.set_outlines(
            self.logic.segmentation_node,
            self.ui.outlineCheckBox.checked,
            self.ui.fillCheckBox.checked,
        )

    # --- save -------------------------------------------------------------------------

    def onSave(self, status: str) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not save."), waitCursor=True):
            self.editor.setActiveEffect(None)  # end the effect: save what the segments hold
            self.ui.statusLabel.text = self.logic.save(
                status, self._parameterNode.reader, self.ui.commentLineEdit.text
            )
            self.ui.commentLineEdit.text = ""
            self._fillTable()

    def onSaveAndNext(self) -> None:
        self.onSave(wl.COMPLETE)  # raises (after showing why) when the save fails
        self._loadNext()


class DeepLiverReviewLogic(ScriptedLoadableModuleLogic, ReviewSession):
    """The review session (DeepLiverSlicer.review_session) with the module's parameter node."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        ReviewSession.__init__(self)

    def getParameterNode(self):
        return DeepLiverReviewParameterNode(super().getParameterNode())


class DeepLiverReviewTest(ScriptedLoadableModuleTest):
    def setUp(self):
        if environment_problem():
            self.fail(environment_problem())
        slicer.mrmlScene.Clear()

    def runTest(self):
        from DeepLiverSlicer import glue_selftest

        glue_selftest.run_all(self, self.setUp)  # volumes, labels, segments, ROIs, identity
        self.setUp()
        self.test_review_flow()

    def _write_series(self, folder: Path, seed: int):
        from deepliver.io.dicom_write import write_ct_series
        from deepliver.phantom import PhantomSpec, make_phantom

        spec = PhantomSpec(
            seed=seed, size=(48, 40, 20), n_tumors=(2, 2), tumor_diameter_mm=(20, 40)
        )
        phantom = make_phantom(spec)
        identity = write_ct_series(
            phantom.ct,
            folder / f"series{seed}",
            patient_id=f"P{seed}",
            patient_name=f"Phantom^{seed}",
            description=f"phantom {seed}",
            uid_entropy=f"deepliver-review-test-{seed}",
        )
        return phantom, identity

    def test_review_flow(self):
        import numpy as np
        from DICOMLib import DICOMUtils

        from deepliver.annotation.segmentation import Segmentation

        work = Path(tempfile.mkdtemp(prefix="DeepLiverReviewTest"))
        first, first_id = self._write_series(work / "dicom", 3)
        second, second_id = self._write_series(work / "dicom", 4)
        (work / "store").mkdir()
        with DICOMUtils.TemporaryDICOMDatabase(str(work / "db")) as database:
            DICOMUtils.importDicom(str(work / "dicom"), database)
            logic = DeepLiverReviewLogic()
            logic.open_store(work / "store")
            logic.refresh(reread_database=True)
            status = {e.series_uid: e.status for e in logic.entries}
            self.assertEqual(
                status, {first_id.series_uid: "not started", second_id.series_uid: "not started"}
            )

            message = logic.load_series(first_id.series_uid)
            self.assertIn("empty", message)
            self.assertEqual(logic.identity.fingerprint, first_id.fingerprint)
            self.assertEqual(segmentations.segment_names(logic.segmentation_node), ["Liver"])
            grid = logic.current_segmentation().grid
            self.assertTrue(
                grid.same_as(first.labels.grid), grid.describe_difference(first.labels.grid)
            )
            drawn = Segmentation.from_label_map(first.labels)
            drawn = Segmentation(grid, drawn.segments, drawn.masks)
            segmentations.node_from_segmentation(
                drawn, logic.volume_node, segmentation_node=logic.segmentation_node
            )
            self.assertIsNotNone(logic.box_around_segment("Tumor 1"))
            logic.save("draft", "tester")
            status = {e.series_uid: e.status for e in logic.entries}
            self.assertEqual(status[first_id.series_uid], "draft")
            logic.save("complete", "tester", "all lesions")
            status = {e.series_uid: e.status for e in logic.entries}
            self.assertEqual(status[first_id.series_uid], "complete")
            self.delayDisplay("loaded, segmented, saved draft and complete")

            following = wl.next_to_do(logic.entries, logic.series_uid)
            self.assertEqual(following.series_uid, second_id.series_uid)
            self.assertIn("empty", logic.load_series(following.series_uid))

            self.assertIn("revision", logic.load_series(first_id.series_uid))
            restored = logic.current_segmentation()
            self.assertEqual([s.name for s in restored.segments], [s.name for s in drawn.segments])
            self.assertEqual(
                [s.structure for s in restored.segments], [s.structure for s in drawn.segments]
            )
            np.testing.assert_array_equal(restored.masks, drawn.masks)
            self.assertEqual([b["segment"] for b in glue.box_records(["Tumor 1"])], ["Tumor 1"])
            logic.close_series()
            self.delayDisplay("next series, then the first reloaded voxel for voxel")
