"""DeepLiverInference: one click "Detect liver/tumor", run in a background deepliver process."""

import os
import sys
from typing import Annotated

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
    dependencies,
    environment_problem,
    smoke,
    volumes,
)
from DeepLiverSlicer.module_widget import ParameterNodeWidgetMixin, select_first_volume
from DeepLiverSlicer.runner import CommandRunner

DEVICES = ["auto", "cpu", "cuda"]


class DeepLiverInference(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("DeepLiver Inference")
        self.parent.categories = ["DeepLiver"]
        self.parent.dependencies = []
        self.parent.contributors = ["DeepLiver developers"]
        self.parent.helpText = _(
            "Detect the liver and liver tumors on a CT volume with DeepLiver's bundled models. "
            "The work runs in a background process: the progress bar follows it and the button "
            "cancels it. See the "
            '<a href="https://github.com/deepliver/SlicerDeepLiver">DeepLiver documentation</a>.'
        )
        self.parent.acknowledgementText = _(
            "DeepLiver builds on 3D Slicer, SimpleITK, pydicom, PyTorch and MONAI; PyTorch is "
            "installed through the SlicerPyTorch extension."
        )


@parameterNodeWrapper
class DeepLiverInferenceParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    device: Annotated[str, Choice(DEVICES)] = "auto"


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

        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.initializeParameterNode()
        if self._problem:
            self.ui.statusLabel.text = self._problem

    def cleanup(self) -> None:
        if self.runner:
            self.runner.cancel()
        self.removeObservers()

    def setDefaultParameters(self, parameterNode) -> None:
        select_first_volume(parameterNode)

    def _update(self, caller=None, event=None) -> None:
        ready = bool(self._parameterNode and self._parameterNode.inputVolume)
        self.ui.applyButton.enabled = (ready and not self._problem) or self.runner.running

    def onApplyButton(self) -> None:
        if self.runner.running:
            self.runner.cancel()
            return
        with slicer.util.tryWithErrorDisplay(_("Could not start the detection."), waitCursor=True):
            if not dependencies.ensure_dependencies(need_torch=False):
                self.ui.statusLabel.text = _("DeepLiver's Python packages are not installed.")
                return
            self.logic.start(self._parameterNode.inputVolume, self.runner)

    def onFinished(self, command, succeeded) -> None:
        with slicer.util.tryWithErrorDisplay(_("The detection's output is not usable.")):
            message = self.logic.finish(succeeded)
            if message:
                self.ui.statusLabel.text = message


class DeepLiverInferenceLogic(ScriptedLoadableModuleLogic):
    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._run = None
        self._volume = None

    def getParameterNode(self):
        return DeepLiverInferenceParameterNode(super().getParameterNode())

    def start(self, volumeNode, runner) -> None:
        """Start the background run on ``volumeNode``; ``finish`` is called when it ends.

        Until the segment command lands (issue 5) this is the frame's smoke path.
        """
        if volumeNode is None:
            raise ValueError("select a CT volume first")
        self._volume = volumes.volume_from_node(volumeNode)
        self._run = smoke.prepare(self._volume)
        command, args = self._run.command
        runner.start(command, *args)

    def finish(self, succeeded: bool) -> str:
        run, self._run = self._run, None
        try:
            return smoke.check(run, self._volume) if succeeded else ""
        finally:
            smoke.cleanup(run)
            self._volume = None


class DeepLiverInferenceTest(ScriptedLoadableModuleTest):
    def setUp(self):
        if environment_problem():
            self.fail(environment_problem())
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_background_run()

    def test_background_run(self):
        from deepliver.phantom import PhantomSpec, make_phantom

        self.assertTrue(dependencies.ensure_dependencies(need_torch=False, ask=False))
        ct = make_phantom(PhantomSpec(seed=5, size=(40, 40, 16))).ct
        node = volumes.node_from_volume(ct, "phantom")
        logic = DeepLiverInferenceLogic()
        finished = []
        runner = CommandRunner(None, None, None, lambda c, ok: finished.append(ok))
        logic.start(node, runner)
        self.assertTrue(runner.wait(timeout_s=180), "the background command did not finish")
        self.assertEqual(finished, [True], runner.command.error_message())
        self.assertIn("Smoke run passed", logic.finish(True))
        self.delayDisplay("background deepliver convert finished and was checked")
