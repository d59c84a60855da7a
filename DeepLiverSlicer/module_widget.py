"""What every DeepLiver module widget does the same way, after Slicer's scripted module template:
load its UI, keep its parameter node connected to the widgets, and let go of the node while the
scene closes.
"""

from __future__ import annotations


class ParameterNodeWidgetMixin:
    """Mixed in before ``ScriptedLoadableModuleWidget`` and ``VTKObservationMixin``.

    The widget sets ``self.logic`` (whose ``getParameterNode`` wraps the node) before calling
    :meth:`initializeParameterNode`, and defines ``_update``, called on every parameter change.
    """

    _parameterNode = None
    _parameterNodeGuiTag = None

    def loadModuleUI(self, name: str):
        """The widgets of ``Resources/UI/<name>.ui``, added to the module panel."""
        import slicer

        uiWidget = slicer.util.loadUI(self.resourcePath(f"UI/{name}.ui"))
        self.layout.addWidget(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        scene = slicer.mrmlScene
        self.addObserver(scene, scene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(scene, scene.EndCloseEvent, self.onSceneEndClose)
        return slicer.util.childWidgetVariables(uiWidget)

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        self.setDefaultParameters(self._parameterNode)

    def setDefaultParameters(self, parameterNode) -> None:
        """Fill parameters the user has not chosen yet (override where there are some)."""

    def setParameterNode(self, parameterNode) -> None:
        import vtk

        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._update)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._update)
            self._update()


def select_first_volume(parameterNode) -> None:
    """Point ``inputVolume`` at the scene's first scalar volume when none is chosen."""
    import slicer

    if not parameterNode.inputVolume:
        first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
        if first:
            parameterNode.inputVolume = first
