"""DeepLiverInference: one click "Detect liver/tumor", run in a background deepliver process."""

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import qt
import slicer
from slicer import vtkMRMLScalarVolumeNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
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

from DeepLiverSlicer import (
    STORE_FOLDER_SETTING,
    dependencies,
    environment_problem,
    segmentations,
    volumes,
)
from DeepLiverSlicer import inference as glue
from DeepLiverSlicer.inference import DEVICES, InferenceSession
from DeepLiverSlicer.module_widget import ParameterNodeWidgetMixin, select_first_volume
from DeepLiverSlicer.runner import CommandRunner


class DeepLiverInference(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("DeepLiver Inference")
        self.parent.categories = ["DeepLiver"]
        self.parent.dependencies = ["Segmentations", "Markups", "SubjectHierarchy", "DICOM"]
        self.parent.contributors = ["DeepLiver developers"]
        self.parent.helpText = _(
            "Detect the liver and liver tumors on a CT volume with DeepLiver's bundled models. "
            "The work runs in a background process: the progress bar follows it and the button "
            "cancels it. The result is a segmentation (Liver, Tumor 1, Tumor 2, ...), one box "
            "per lesion and a lesion table; for a DICOM series it is also saved as a model "
            "revision in the annotation store, if one is chosen. See the "
            '<a href="https://github.com/deepliver/SlicerDeepLiver">DeepLiver documentation</a>.'
        )
        self.parent.acknowledgementText = _(
            "DeepLiver builds on 3D Slicer, SimpleITK, pydicom, PyTorch and MONAI; PyTorch is "
            "installed through the SlicerPyTorch extension."
        )


@parameterNodeWrapper
class DeepLiverInferenceParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    device: Annotated[str, Choice(list(DEVICES))] = "auto"


class DeepLiverInferenceWidget(
    ParameterNodeWidgetMixin, ScriptedLoadableModuleWidget, VTKObservationMixin
):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.runner = None
        self._problem = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        self.ui = self.loadModuleUI("DeepLiverInference")
        self.logic = DeepLiverInferenceLogic()
        self._problem = environment_problem()
        self.runner = CommandRunner(
            self.ui.applyButton, self.ui.progressBar, self.ui.statusLabel, self.onFinished
        )
        glue.fill_lesion_table(self.ui.lesionTable, [])
        self.ui.storeFolderSelector.currentPath = qt.QSettings().value(STORE_FOLDER_SETTING, "")
        self.ui.storeFolderSelector.connect("currentPathChanged(QString)", self.onStoreChanged)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.initializeParameterNode()
        self._fillModels()
        if self._problem:
            self.ui.statusLabel.text = self._problem

    def cleanup(self) -> None:
        if self.runner:
            self.runner.cancel()
        self.removeObservers()

    def onSceneStartClose(self, caller, event) -> None:
        ParameterNodeWidgetMixin.onSceneStartClose(self, caller, event)
        self.runner.cancel()  # its volume is about to go
        glue.fill_lesion_table(self.ui.lesionTable, [])

    def setDefaultParameters(self, parameterNode) -> None:
        select_first_volume(parameterNode)

    def _fillModels(self) -> None:
        families, problem = glue.bundled_families()
        combo = self.ui.modelComboBox
        if families and combo.count == 0:
            combo.addItems(families)
        detectors = self.ui.detectorComboBox
        if detectors.count == 1:  # "none" only, until the models can be listed
            detectors.addItems(glue.bundled_detectors())
        if problem:
            self.ui.statusLabel.text = _("Models: {problem}").format(problem=problem)

    def _update(self, caller=None, event=None) -> None:
        ready = bool(self._parameterNode and self._parameterNode.inputVolume)
        self.ui.applyButton.enabled = (ready and not self._problem) or self.runner.running

    def onStoreChanged(self, path) -> None:
        qt.QSettings().setValue(STORE_FOLDER_SETTING, str(path))

    def onApplyButton(self) -> None:
        if self.runner.running:
            self.runner.cancel()
            return
        with slicer.util.tryWithErrorDisplay(_("Could not start the detection."), waitCursor=True):
            if not dependencies.ensure_dependencies(need_torch=True):
                self.ui.statusLabel.text = _("DeepLiver's Python packages are not installed.")
                return
            self._fillModels()  # listing the models needs PyTorch
            glue.fill_lesion_table(self.ui.lesionTable, [])
            detector = self.ui.detectorComboBox.currentText
            self.logic.start(
                self._parameterNode.inputVolume,
                self.runner,
                self.ui.modelComboBox.currentText,
                self._parameterNode.device,
                self.ui.storeFolderSelector.currentPath,
                detector=None if detector == "none" else detector,
            )

    def onFinished(self, command, succeeded) -> None:
        with slicer.util.tryWithErrorDisplay(_("The detection's output is not usable.")):
            try:
                message = self.logic.finish(command, succeeded)
            finally:  # the lesions shown even when saving them to the store failed
                glue.fill_lesion_table(self.ui.lesionTable, self.logic.rows)
            if message:
                self.ui.statusLabel.text = message


class DeepLiverInferenceLogic(ScriptedLoadableModuleLogic, InferenceSession):
    """The inference session (DeepLiverSlicer.inference) with the module's parameter node."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        InferenceSession.__init__(self)

    def getParameterNode(self):
        return DeepLiverInferenceParameterNode(super().getParameterNode())


class DeepLiverInferenceTest(ScriptedLoadableModuleTest):
    """Detect on a phantom volume, then on a phantom DICOM series with a store."""

    def setUp(self):
        if environment_problem():
            self.fail(environment_problem())
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_detect_on_a_volume()
        self.setUp()
        self.test_detect_on_a_dicom_series_saves_a_model_revision()
        self.setUp()
        self.test_detector_boxes_become_rois()

    def _phantom(self):
        from deepliver.phantom import PhantomSpec, make_phantom

        spec = PhantomSpec(seed=11, size=(128, 128, 40), n_tumors=(2, 2))
        return make_phantom(spec)

    def _detect(self, node, store="", detector=None):
        """Run the real background `deepliver segment` on ``node``; returns the logic."""
        self.assertTrue(dependencies.ensure_dependencies(need_torch=True, ask=False))
        families, problem = glue.bundled_families()
        self.assertIsNone(problem)
        logic = DeepLiverInferenceLogic()
        finished = []
        runner = CommandRunner(None, None, None, lambda c, ok: finished.append(ok))
        logic.start(node, runner, families[0], "auto", store, detector=detector)
        self.assertTrue(runner.wait(timeout_s=600), "deepliver segment did not finish")
        self.assertEqual(finished, [True], runner.command.error_message())
        message = logic.finish(runner.command, True)
        self.assertIn("Done", message)
        return logic, message

    def _check_result(self, logic, node, phantom):
        import numpy as np

        names = segmentations.segment_names(logic.segmentation_node)
        self.assertEqual(names[0], "Liver")
        volume = volumes.volume_from_node(node, copy=False)
        self.assertTrue(volume.grid.same_as(phantom.ct.grid), "the phantom is not on the grid")
        liver = segmentations.segment_mask(logic.segmentation_node, "Liver", node)
        self.assertEqual(liver.shape, volume.shape)
        reference = phantom.labels.array > 0
        dice = 2.0 * np.logical_and(liver, reference).sum() / (liver.sum() + reference.sum())
        self.assertGreaterEqual(dice, 0.85, f"liver Dice {dice:.3f}")
        table = qt.QTableWidget()
        glue.fill_lesion_table(table, logic.rows)
        self.assertEqual(table.columnCount, len(glue.LESION_COLUMNS))
        self.assertTrue(all(row[-1] for row in logic.rows), "a lesion without its probability")
        rois = slicer.util.getNodesByClass("vtkMRMLMarkupsROINode")
        self.assertEqual(len(rois), table.rowCount)
        self.assertEqual(
            sorted(r.GetName() for r in rois), sorted(f"Lesion {row[0]}" for row in logic.rows)
        )
        return dice

    def test_detect_on_a_volume(self):
        phantom = self._phantom()
        node = volumes.node_from_volume(phantom.ct, "phantom")
        logic, message = self._detect(node)
        dice = self._check_result(logic, node, phantom)
        self.assertIsNone(logic.revision)
        self.delayDisplay(f"{message} Liver Dice {dice:.3f}")

    def test_detector_boxes_become_rois(self):
        detectors = glue.bundled_detectors()
        if not detectors:
            self.delayDisplay("No bundled detector: lesion boxes from the tumor segments only.")
            return
        for detector in detectors:
            self.setUp()
            node = volumes.node_from_volume(self._phantom().ct, "phantom")
            logic, message = self._detect(node, detector=detector)
            rois = slicer.util.getNodesByClass("vtkMRMLMarkupsROINode")
            self.assertEqual(len(rois), len(logic.roi_nodes))
            names = sorted(roi.GetName() for roi in rois)
            self.assertEqual(names, sorted(f"Lesion {n}" for n in range(1, len(rois) + 1)))
            for roi in rois:
                score = float(roi.GetAttribute(glue.DETECTOR_SCORE_ATTRIBUTE))
                self.assertTrue(0.0 < score <= 1.0)
            self.delayDisplay(f"{detector}: {message}")

    def test_detect_on_a_dicom_series_saves_a_model_revision(self):
        from DICOMLib import DICOMUtils

        from deepliver.annotation.store import AnnotationStore
        from deepliver.io.dicom_write import write_ct_series
        from DeepLiverSlicer import dicom_database

        work = Path(tempfile.mkdtemp(prefix="DeepLiverInferenceTest"))
        phantom = self._phantom()
        identity = write_ct_series(
            phantom.ct, work / "dicom", patient_id="P11", uid_entropy="deepliver-inference-11"
        )
        (work / "store").mkdir()
        with DICOMUtils.TemporaryDICOMDatabase(str(work / "db")) as database:
            self.assertTrue(DICOMUtils.importDicom(str(work / "dicom"), database))
            node = dicom_database.load_series(identity.series_uid)
            logic, message = self._detect(node, str(work / "store"))
            self._check_result(logic, node, phantom)
            self.assertIsNotNone(logic.revision, message)
            store = AnnotationStore(work / "store")
            latest = store.latest(identity.series_uid, source="model")
            self.assertEqual(latest.number, logic.revision.number)
            self.assertTrue(latest.source.name.startswith("liver-"))
            self.assertEqual(len(latest.boxes), len(logic.rows))
        shutil.rmtree(work, ignore_errors=True)
        self.delayDisplay(message)
