"""DeepLiverReview: annotate a CT series: its DICOM identity, coded liver and tumor segments."""

import os
import sys

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

from deepliver.annotation.structures import STRUCTURES
from DeepLiverSlicer import (
    dicom_identity,
    environment_problem,
    segmentations,
)
from DeepLiverSlicer.module_widget import ParameterNodeWidgetMixin, select_first_volume


class DeepLiverReview(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("DeepLiver Review")
        self.parent.categories = ["DeepLiver"]
        self.parent.dependencies = ["Segmentations", "Terminologies", "SubjectHierarchy"]
        self.parent.contributors = ["DeepLiver developers"]
        self.parent.helpText = _(
            "Annotate CT series: liver and liver tumor segments with standard codes (SNOMED CT), "
            "tied to the series' DICOM identity. See the "
            '<a href="https://github.com/deepliver/SlicerDeepLiver">DeepLiver documentation</a>.'
        )
        self.parent.acknowledgementText = _(
            "DeepLiver builds on 3D Slicer, SimpleITK, pydicom, PyTorch and MONAI. "
            "Its module layout follows Slicer's scripted module template."
        )


@parameterNodeWrapper
class DeepLiverReviewParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    segmentation: vtkMRMLSegmentationNode


class DeepLiverReviewWidget(
    ParameterNodeWidgetMixin, ScriptedLoadableModuleWidget, VTKObservationMixin
):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._problem = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        self.ui = self.loadModuleUI("DeepLiverReview")
        self.logic = DeepLiverReviewLogic()
        self._problem = environment_problem()

        for structure in STRUCTURES:
            self.ui.structureList.addItem(self.logic.structureText(structure))

        self.ui.createSegmentationButton.connect("clicked(bool)", self.onCreateSegmentation)
        self.initializeParameterNode()
        if self._problem:
            self.ui.statusLabel.text = self._problem

    def cleanup(self) -> None:
        self.removeObservers()

    def setDefaultParameters(self, parameterNode) -> None:
        select_first_volume(parameterNode)

    def _update(self, caller=None, event=None) -> None:
        volume = self._parameterNode.inputVolume if self._parameterNode else None
        self.ui.identityLineEdit.text = self.logic.identityText(volume) if volume else ""
        self.ui.createSegmentationButton.enabled = volume is not None and not self._problem

    def onCreateSegmentation(self) -> None:
        with slicer.util.tryWithErrorDisplay(
            _("Could not create the segmentation."), waitCursor=True
        ):
            node = self.logic.createSegmentation(self._parameterNode.inputVolume)
            self._parameterNode.segmentation = node
            self.ui.statusLabel.text = _("Created {name}.").format(name=node.GetName())


class DeepLiverReviewLogic(ScriptedLoadableModuleLogic):
    def getParameterNode(self):
        return DeepLiverReviewParameterNode(super().getParameterNode())

    @staticmethod
    def structureText(structure) -> str:
        return (
            f"{structure.label}  {structure.name}  ({structure.type.scheme} {structure.type.value})"
        )

    @staticmethod
    def identityText(volumeNode) -> str:
        identity = dicom_identity.dicom_identity(volumeNode)
        return identity.describe() if identity else _("not loaded from DICOM")

    @staticmethod
    def createSegmentation(volumeNode):
        if volumeNode is None:
            raise ValueError("select a volume first")
        name = f"{volumeNode.GetName()} annotation"
        return segmentations.new_segmentation(volumeNode, slicer.mrmlScene.GenerateUniqueName(name))


class DeepLiverReviewTest(ScriptedLoadableModuleTest):
    def setUp(self):
        if environment_problem():
            self.fail(environment_problem())
        slicer.mrmlScene.Clear()

    def runTest(self):
        for test in (
            self.test_volume_round_trip,
            self.test_labels_round_trip,
            self.test_other_grid_refused,
            self.test_roi_box,
            self.test_dicom_identity,
        ):
            self.setUp()
            test()

    def _phantom(self):
        from deepliver.phantom import PhantomSpec, make_phantom

        spec = PhantomSpec(seed=3, size=(48, 40, 20), n_tumors=(1, 2), tumor_diameter_mm=(20, 40))
        return make_phantom(spec)

    def test_volume_round_trip(self):
        import numpy as np

        from DeepLiverSlicer.volumes import node_from_volume, volume_from_node

        ct = self._phantom().ct
        node = node_from_volume(ct, "phantom")
        back = volume_from_node(node)
        np.testing.assert_array_equal(back.array, ct.array)
        self.assertTrue(back.grid.same_as(ct.grid), back.grid.describe_difference(ct.grid))
        # RAS in Slicer: the LPS origin with its first two coordinates negated.
        np.testing.assert_allclose(node.GetOrigin(), ct.origin * [-1, -1, 1], atol=1e-6)
        self.delayDisplay("volume node <-> Volume round trip exact")

    def test_labels_round_trip(self):
        import numpy as np

        from DeepLiverSlicer.terminology import parse_terminology_entry, segment_terminology
        from DeepLiverSlicer.volumes import node_from_volume

        phantom = self._phantom()
        volume = node_from_volume(phantom.ct, "phantom")
        seg = segmentations.segmentation_from_labels(phantom.labels, volume, "labels")
        self.assertEqual(seg.GetSegmentation().GetNumberOfSegments(), len(STRUCTURES))
        back = segmentations.labels_from_segmentation(seg, volume)
        np.testing.assert_array_equal(back.array, phantom.labels.array)
        for structure in STRUCTURES:
            segment_id = seg.GetSegmentation().GetSegmentIdBySegmentName(structure.name)
            entry = parse_terminology_entry(
                segment_terminology(seg.GetSegmentation().GetSegment(segment_id))
            )
            self.assertEqual(entry["type"], structure.type)
        self.delayDisplay("label map -> segmentation -> label map exact, segments coded")

    def test_other_grid_refused(self):
        from deepliver.volume import Grid, GridMismatchError, Volume
        from DeepLiverSlicer.volumes import node_from_volume

        labels = self._phantom().labels
        volume = node_from_volume(self._phantom().ct, "phantom")
        moved = Grid(labels.shape, labels.origin + 2.0, labels.spacing, labels.direction)
        with self.assertRaises(GridMismatchError):
            segmentations.segmentation_from_labels(Volume(labels.array, moved), volume, "refused")
        other = node_from_volume(Volume(labels.array, moved), "other")
        with self.assertRaises(GridMismatchError):
            segmentations.labels_from_segmentation(segmentations.new_segmentation(other), volume)
        self.delayDisplay("label map or segmentation on another grid refused")

    def test_roi_box(self):
        import numpy as np

        from DeepLiverSlicer.markups import PhysicalBox, box_from_roi, roi_from_box

        box = PhysicalBox([-20.0, 35.5, -110.0], [42.0, 80.0, -60.25])
        roi = roi_from_box(box, "box")
        center = [0.0, 0.0, 0.0]
        roi.GetCenterWorld(center)
        np.testing.assert_allclose(center, [-11.0, -57.75, -85.125])
        back = box_from_roi(roi)
        np.testing.assert_allclose(back.minimum, box.minimum, atol=1e-9)
        np.testing.assert_allclose(back.maximum, box.maximum, atol=1e-9)
        self.delayDisplay("ROI <-> LPS box")

    def test_dicom_identity(self):
        from DeepLiverSlicer.volumes import node_from_volume

        phantom = self._phantom()
        node = node_from_volume(phantom.ct, "phantom")
        self.assertIsNone(dicom_identity.dicom_identity(node))
        sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
        patient = sh.CreateSubjectItem(sh.GetSceneItemID(), "patient")
        study = sh.CreateStudyItem(patient, "study")
        sh.SetItemUID(study, "DICOM", "1.2.3.4")
        item = sh.GetItemByDataNode(node)
        sh.SetItemParent(item, study)
        sh.SetItemUID(item, "DICOM", "1.2.3.4.5")
        uids = [f"1.2.3.4.5.{k}" for k in range(phantom.ct.shape[0])]
        node.SetAttribute("DICOM.instanceUIDs", " ".join(uids))
        identity = dicom_identity.dicom_identity(node)
        self.assertEqual((identity.study_uid, identity.series_uid), ("1.2.3.4", "1.2.3.4.5"))
        self.assertEqual(identity.sop_uids, tuple(uids))
        self.assertIsNotNone(identity.fingerprint(phantom.ct.grid))
        self.delayDisplay("DICOM identity from the subject hierarchy")
