"""DeepLiverTraining: export the curated series, train a model in the background or on another
machine, follow its loss and validation score, and register the model it makes."""

import os
import pathlib
import sys
from typing import Annotated

import qt
import slicer
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

from deepliver.errors import DeepLiverError
from deepliver.models.card import ARCHITECTURES
from DeepLiverSlicer import STORE_FOLDER_SETTING, dependencies, environment_problem
from DeepLiverSlicer import training as glue
from DeepLiverSlicer.module_widget import ParameterNodeWidgetMixin
from DeepLiverSlicer.runner import CommandRunner


class DeepLiverTraining(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("DeepLiver Training")
        self.parent.categories = ["DeepLiver"]
        self.parent.dependencies = []
        self.parent.contributors = ["DeepLiver developers"]
        self.parent.helpText = _(
            "Export the series of the annotation store marked complete or approved as a "
            "de-identified dataset, train a U-Net or a tumor detector on it on this machine or "
            "through your own remote command, follow its loss and validation score per epoch, "
            "and register the model it makes. See the "
            '<a href="https://github.com/deepliver/SlicerDeepLiver">DeepLiver documentation</a>.'
        )
        self.parent.acknowledgementText = _(
            "DeepLiver builds on 3D Slicer, SimpleITK, pydicom, PyTorch and MONAI."
        )


@parameterNodeWrapper
class DeepLiverTrainingParameterNode:
    datasetFolder: pathlib.Path
    runFolder: pathlib.Path
    exportStatus: Annotated[str, Choice(list(glue.EXPORT_STATUSES))] = "complete"
    architecture: Annotated[str, Choice(list(ARCHITECTURES))] = "unet2d"
    preset: Annotated[str, Choice(list(glue.PRESETS))] = "fast CPU"


class DeepLiverTrainingWidget(
    ParameterNodeWidgetMixin, ScriptedLoadableModuleWidget, VTKObservationMixin
):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.runners = {}
        self.watchTimer = None
        self._problem = None
        self._seriesKey = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        self.ui = self.loadModuleUI("DeepLiverTraining")
        self.logic = DeepLiverTrainingLogic()
        self._problem = environment_problem()
        ui = self.ui
        for name, button, done in (
            ("export", ui.exportButton, self.onExported),
            ("launch", ui.launchButton, self.onLaunched),
            ("register", ui.registerButton, self.onRegistered),
        ):
            self.runners[name] = CommandRunner(button, ui.progressBar, ui.statusLabel, done)
        self.watchTimer = qt.QTimer()
        self.watchTimer.setInterval(glue.WATCH_INTERVAL_MS)
        self.watchTimer.connect("timeout()", self.onWatch)
        settings = qt.QSettings()
        ui.storeFolderSelector.currentPath = settings.value(STORE_FOLDER_SETTING, "")
        ui.dicomFolderSelector.currentPath = settings.value(glue.DICOM_FOLDER_SETTING, "")
        ui.remoteTemplateLineEdit.text = settings.value(glue.REMOTE_TEMPLATE_SETTING, "")
        ui.storeFolderSelector.connect("currentPathChanged(QString)", self.onStoreChanged)
        ui.dicomFolderSelector.connect("currentPathChanged(QString)", self.onDicomChanged)
        ui.remoteTemplateLineEdit.connect("editingFinished()", self.onTemplateEdited)
        ui.exportButton.connect("clicked(bool)", self.onExportButton)
        ui.launchButton.connect("clicked(bool)", self.onLaunchButton)
        ui.watchButton.connect("clicked(bool)", self.onWatchButton)
        ui.registerButton.connect("clicked(bool)", self.onRegisterButton)
        self.initializeParameterNode()
        if self._problem:
            ui.statusLabel.text = self._problem

    def cleanup(self) -> None:
        for runner in self.runners.values():
            runner.cancel()
        if self.watchTimer:
            self.watchTimer.stop()  # the run goes on: it is detached
        self.removeObservers()

    def onSceneStartClose(self, caller, event) -> None:
        ParameterNodeWidgetMixin.onSceneStartClose(self, caller, event)
        self.ui.plotWidget.setMRMLPlotViewNode(None)  # its nodes are about to go

    # --- state ----------------------------------------------------------------------------

    def _busy(self) -> bool:
        return any(runner.running for runner in self.runners.values())

    def _update(self, caller=None, event=None) -> None:
        p = self._parameterNode
        if not p:
            return
        ui, idle = self.ui, not self._busy() and not self._problem
        stages = list(glue.stages_for(p.architecture))
        if [ui.stageComboBox.itemText(i) for i in range(ui.stageComboBox.count)] != stages:
            ui.stageComboBox.clear()
            ui.stageComboBox.addItems(stages)
        self._showSeries(ui.storeFolderSelector.currentPath, p.exportStatus)
        export_ready = ui.storeFolderSelector.currentPath and ui.dicomFolderSelector.currentPath
        export_ready = bool(export_ready) and self._isFolderSet(p.datasetFolder)
        ui.exportButton.enabled = (export_ready and idle) or self.runners["export"].running
        dataset_ready = self._isFolderSet(p.datasetFolder) and p.datasetFolder.is_dir()
        ui.launchButton.enabled = (dataset_ready and idle) or self.runners["launch"].running
        run = p.runFolder if self._isFolderSet(p.runFolder) else None
        ui.watchButton.enabled = glue.is_launched(run)
        registering = self.runners["register"].running
        ui.registerButton.enabled = (glue.has_model(run) and idle) or registering

    def _showSeries(self, store, status) -> None:
        """How many series the export takes; the store is read again only when asked anew."""
        if self._seriesKey != (store, status):
            self._seriesKey = (store, status)
            self.ui.seriesLabel.text = glue.series_summary(store, status)

    @staticmethod
    def _isFolderSet(folder) -> bool:
        return bool(folder) and str(folder) not in ("", ".")

    def onStoreChanged(self, path) -> None:
        qt.QSettings().setValue(STORE_FOLDER_SETTING, str(path))
        self._seriesKey = None  # read the store again, even the same folder
        self._update()

    def onDicomChanged(self, path) -> None:
        qt.QSettings().setValue(glue.DICOM_FOLDER_SETTING, str(path))
        self._update()

    def onTemplateEdited(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("The remote template cannot be used.")):
            template = glue.checked_template(self.ui.remoteTemplateLineEdit.text)
            qt.QSettings().setValue(glue.REMOTE_TEMPLATE_SETTING, template)

    # --- actions --------------------------------------------------------------------------

    def _start(self, name, need_torch, action) -> None:
        """Cancel the runner's command when it runs; else install what it needs and start."""
        if self.runners[name].running:
            self.runners[name].cancel()
            return
        with slicer.util.tryWithErrorDisplay(_("Could not start."), waitCursor=True):
            if not dependencies.ensure_dependencies(need_torch=need_torch):
                self.ui.statusLabel.text = _("DeepLiver's Python packages are not installed.")
                return
            action(self.runners[name])
        self._update()

    def onExportButton(self) -> None:
        ui, p = self.ui, self._parameterNode
        self._start(
            "export",
            False,
            lambda runner: self.logic.export(
                runner,
                ui.storeFolderSelector.currentPath,
                ui.dicomFolderSelector.currentPath,
                p.datasetFolder,
                p.exportStatus,
            ),
        )

    def onLaunchButton(self) -> None:
        p, template = self._parameterNode, self.ui.remoteTemplateLineEdit.text

        def launch(runner):
            run = p.runFolder if self._isFolderSet(p.runFolder) else None
            stage = self.ui.stageComboBox.currentText
            p.runFolder = self.logic.launch(
                runner, p.architecture, stage, p.datasetFolder, p.preset, template, run
            )

        self._start("launch", not template.strip(), launch)  # a local run needs PyTorch

    def onRegisterButton(self) -> None:
        self._start(
            "register", True, lambda r: self.logic.register(r, self._parameterNode.runFolder)
        )

    def onWatchButton(self) -> None:
        self.watchTimer.start()
        self.onWatch()

    def onExported(self, command, succeeded) -> None:
        if succeeded:
            outputs = command.result() or {}
            self.ui.statusLabel.text = _(
                "Exported {train} training and {test} test case(s)."
            ).format(train=len(outputs.get("training", [])), test=len(outputs.get("test", [])))
        self._update()

    def onLaunched(self, command, succeeded) -> None:
        if succeeded:
            self.onWatchButton()
        self._update()

    def onRegistered(self, command, succeeded) -> None:
        if succeeded:
            outputs = command.result() or {}
            self.ui.statusLabel.text = _("Registered model {name} {version}.").format(
                name=outputs.get("name", ""), version=outputs.get("version", "")
            )
        self._update()

    def onWatch(self) -> None:
        """Read the run folder: the state in the status label, the log in the plot."""
        run = self._parameterNode.runFolder if self._parameterNode else None
        try:
            status, view = self.logic.poll(run)
        except DeepLiverError as error:
            self.watchTimer.stop()
            self.ui.statusLabel.text = str(error)
            return
        if view is not None and self.ui.plotWidget.mrmlPlotViewNode() != view:
            self.ui.plotWidget.setMRMLPlotViewNode(view)
        self.ui.statusLabel.text = glue.status_line(status)
        if not glue.still_going(status.state):
            self.watchTimer.stop()
            self._update()


class DeepLiverTrainingLogic(ScriptedLoadableModuleLogic):
    """Starts the commands with a runner; follows a launched run by reading its folder."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.plot = glue.TrainingPlot()

    def getParameterNode(self):
        return DeepLiverTrainingParameterNode(super().getParameterNode())

    def export(self, runner, store, dicom, dataset, status, key_file=None) -> None:
        runner.start("export", *glue.export_args(store, dicom, dataset, status, key_file))

    def launch(
        self, runner, architecture, stage, dataset, preset, template="", run=None, extra=()
    ) -> pathlib.Path:
        """Start ``deepliver launch``; returns the run folder (a new one beside the dataset
        unless ``run`` is given and not launched yet)."""
        chosen = glue.PRESETS[preset]
        validation = glue.validation_count(chosen, glue.dataset_cases(dataset))
        name = glue.run_name(architecture, stage)
        if not run or glue.is_launched(run):
            run = glue.default_run_folder(dataset, name)
        train = glue.train_args(architecture, stage, dataset, chosen, validation, name, extra)
        runner.start("launch", *glue.launch_args(run, train, template))
        return pathlib.Path(run)

    def poll(self, run):
        """(the run's Status, the plot view node or None before the first epoch)."""
        from deepliver.training.launch import status

        if not glue.is_launched(run):
            raise DeepLiverError(f"{run}: not a run started by Launch")
        return status(run), self.plot.update(glue.run_columns(run))

    def register(self, runner, run) -> None:
        runner.start("models", *glue.models_add_args(run))


class DeepLiverTrainingTest(ScriptedLoadableModuleTest):
    """Store -> export -> tiny local training followed to its end -> plot -> registered model."""

    # Tiny settings: a run of seconds on a CPU (the presets' lengths are overridden).
    TINY = ("--epochs", "1", "--steps", "2", "--batch", "2", "--channels", "4", "8")
    TINY += ("--patch", "32", "32", "1")

    def setUp(self):
        if environment_problem():
            self.fail(environment_problem())
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_export_train_plot_register()

    def _store(self, work):
        """Three phantom series of one patient (so all go to training), each complete."""
        from deepliver.annotation.segmentation import Segmentation
        from deepliver.annotation.store import AnnotationStore
        from deepliver.io.dicom_read import read_series
        from deepliver.io.dicom_write import write_ct_series
        from deepliver.phantom import PhantomSpec, make_phantom
        from deepliver.volume import Volume

        store = AnnotationStore(work / "store")
        for seed in (51, 52, 53):
            phantom = make_phantom(PhantomSpec(seed=seed, size=(48, 48, 16), n_tumors=(1, 1)))
            folder = work / "dicom" / str(seed)
            write_ct_series(phantom.ct, folder, patient_id="P1", uid_entropy=f"training-{seed}")
            volume, identity = read_series(folder)
            labels = Segmentation.from_label_map(Volume(phantom.labels.array, volume.grid))
            store.save(identity, volume.grid, labels, reader="Test", status="complete")

    def _run(self, runner, results, what):
        self.assertTrue(runner.wait(timeout_s=600), f"deepliver {what} did not finish")
        self.assertTrue(results[-1], runner.command.error_message())

    def test_export_train_plot_register(self):
        import tempfile

        from deepliver.models.card import find_model
        from deepliver.training.launch import wait

        self.assertTrue(dependencies.ensure_dependencies(need_torch=True, ask=False))
        work = pathlib.Path(tempfile.mkdtemp(prefix="DeepLiverTraining-"))
        self._store(work)
        logic, results = DeepLiverTrainingLogic(), []
        runner = CommandRunner(None, None, None, lambda c, ok: results.append(ok))
        dataset = work / "dataset"
        logic.export(runner, work / "store", work / "dicom", dataset, "complete", work / "key")
        self._run(runner, results, "export")
        self.assertEqual(glue.dataset_cases(dataset), 3)

        run = logic.launch(runner, "unet2d", "liver", dataset, "fast CPU", extra=self.TINY)
        self._run(runner, results, "launch")
        final = wait(run, timeout_s=600)
        self.assertEqual(final.state, "finished", final.describe())
        status, view = logic.poll(run)
        self.assertIsNotNone(view)
        self.assertEqual(logic.plot.rows, len(status.epochs))
        self.assertEqual(logic.plot.rows, 1)

        previous = os.environ.get("DEEPLIVER_USER_MODELS")
        os.environ["DEEPLIVER_USER_MODELS"] = str(work / "models")  # the child inherits it
        try:
            logic.register(runner, run)
            self._run(runner, results, "models add")
            self.assertTrue(find_model(run.name).is_relative_to(work / "models"))
        finally:
            if previous is None:
                os.environ.pop("DEEPLIVER_USER_MODELS")
            else:
                os.environ["DEEPLIVER_USER_MODELS"] = previous
        self.delayDisplay(f"trained and registered {run.name}: {glue.status_line(status)}")
