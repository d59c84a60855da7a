"""DeepLiverTraining: export the curated set and launch training in a background process."""

import os
import pathlib
import sys

import slicer
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

from DeepLiverSlicer import (
    dependencies,
    environment_problem,
)
from DeepLiverSlicer.module_widget import ParameterNodeWidgetMixin
from DeepLiverSlicer.runner import CommandRunner, outputs_summary


class DeepLiverTraining(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("DeepLiver Training")
        self.parent.categories = ["DeepLiver"]
        self.parent.dependencies = []
        self.parent.contributors = ["DeepLiver developers"]
        self.parent.helpText = _(
            "Export the curated annotations as a training set and launch the training of "
            "DeepLiver's models in a background process, with progress and cancel. See the "
            '<a href="https://github.com/deepliver/SlicerDeepLiver">DeepLiver documentation</a>.'
        )
        self.parent.acknowledgementText = _(
            "DeepLiver builds on 3D Slicer, SimpleITK, pydicom, PyTorch and MONAI."
        )


@parameterNodeWrapper
class DeepLiverTrainingParameterNode:
    datasetFolder: pathlib.Path


class DeepLiverTrainingWidget(
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
        self.ui = self.loadModuleUI("DeepLiverTraining")
        self.logic = DeepLiverTrainingLogic()
        self._problem = environment_problem()
        self.runner = CommandRunner(
            self.ui.launchButton, self.ui.progressBar, self.ui.statusLabel, self.onFinished
        )

        self.ui.launchButton.connect("clicked(bool)", self.onLaunchButton)
        self.initializeParameterNode()
        if self._problem:
            self.ui.statusLabel.text = self._problem

    def cleanup(self) -> None:
        if self.runner:
            self.runner.cancel()
        self.removeObservers()

    def _update(self, caller=None, event=None) -> None:
        folder = self._parameterNode.datasetFolder if self._parameterNode else None
        ready = self.logic.isDatasetFolder(folder) and not self._problem
        self.ui.launchButton.enabled = ready or self.runner.running

    def onLaunchButton(self) -> None:
        if self.runner.running:
            self.runner.cancel()
            return
        with slicer.util.tryWithErrorDisplay(_("Could not launch."), waitCursor=True):
            if not dependencies.ensure_dependencies(need_torch=False):
                self.ui.statusLabel.text = _("DeepLiver's Python packages are not installed.")
                return
            self.logic.launch(self._parameterNode.datasetFolder, self.runner)

    def onFinished(self, command, succeeded) -> None:
        if succeeded:
            self.ui.statusLabel.text = _("Done: {summary}").format(
                summary=outputs_summary(command.result())
            )


class DeepLiverTrainingLogic(ScriptedLoadableModuleLogic):
    def getParameterNode(self):
        return DeepLiverTrainingParameterNode(super().getParameterNode())

    @staticmethod
    def isDatasetFolder(folder) -> bool:
        return bool(folder) and str(folder) not in ("", ".") and pathlib.Path(folder).is_dir()

    def launch(self, folder, runner) -> None:
        """Start the background command on the dataset folder.

        Until training lands this is the frame's smoke path: ``deepliver info`` scans the folder.
        """
        if not self.isDatasetFolder(folder):
            raise ValueError(f"not a folder: {folder}")
        runner.start("info", str(folder))


class DeepLiverTrainingTest(ScriptedLoadableModuleTest):
    def setUp(self):
        if environment_problem():
            self.fail(environment_problem())
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_launch_on_phantom_series()

    def test_launch_on_phantom_series(self):
        import tempfile

        self.assertTrue(dependencies.ensure_dependencies(need_torch=False, ask=False))
        results = []
        runner = CommandRunner(None, None, None, lambda c, ok: results.append((ok, c.result())))
        with tempfile.TemporaryDirectory(prefix="DeepLiverTraining-") as folder:
            runner.start("phantom", folder, "--size", "32", "32", "12", "--seed", "2")
            self.assertTrue(runner.wait(timeout_s=180), "deepliver phantom did not finish")
            self.assertTrue(results[-1][0], runner.command.error_message())
            DeepLiverTrainingLogic().launch(pathlib.Path(folder) / "dicom", runner)
            self.assertTrue(runner.wait(timeout_s=180), "deepliver info did not finish")
        succeeded, outputs = results[-1]
        self.assertTrue(succeeded, runner.command.error_message())
        self.assertEqual(len(outputs["series"]), 1, outputs_summary(outputs))
        self.delayDisplay(f"background deepliver info: {outputs_summary(outputs)}")
