"""Checks of the glue that need Slicer, run by the DeepLiverReview self-test.

Each check takes the running ``unittest.TestCase`` (for its asserts and ``delayDisplay``) and a
cleared scene; :func:`run_all` runs them one after the other. They cover the one LPS/RAS flip,
label maps and segments on the exact grid of a volume (other grids refused), ROI boxes, and the
DICOM identity from the subject hierarchy.
"""

from DeepLiverSlicer import dicom_identity, segmentations


def run_all(test, clear) -> None:
    for check in (
        check_volume_round_trip,
        check_labels_round_trip,
        check_other_grid_refused,
        check_segments_round_trip,
        check_roi_box,
        check_dicom_identity,
    ):
        clear()
        check(test)


def _phantom():
    from deepliver.phantom import PhantomSpec, make_phantom

    spec = PhantomSpec(seed=3, size=(48, 40, 20), n_tumors=(1, 2), tumor_diameter_mm=(20, 40))
    return make_phantom(spec)


def check_volume_round_trip(test):
    import numpy as np

    from DeepLiverSlicer.volumes import node_from_volume, volume_from_node

    ct = _phantom().ct
    node = node_from_volume(ct, "phantom")
    back = volume_from_node(node)
    np.testing.assert_array_equal(back.array, ct.array)
    test.assertTrue(back.grid.same_as(ct.grid), back.grid.describe_difference(ct.grid))
    # RAS in Slicer: the LPS origin with its first two coordinates negated.
    np.testing.assert_allclose(node.GetOrigin(), ct.origin * [-1, -1, 1], atol=1e-6)
    test.delayDisplay("volume node <-> Volume round trip exact")


def check_labels_round_trip(test):
    import numpy as np

    from deepliver.annotation.segmentation import Segmentation
    from DeepLiverSlicer.terminology import parse_terminology_entry, segment_terminology
    from DeepLiverSlicer.volumes import node_from_volume

    phantom = _phantom()
    volume = node_from_volume(phantom.ct, "phantom")
    drawn = Segmentation.from_label_map(phantom.labels)
    node = segmentations.node_from_segmentation(drawn, volume, "labels")
    back = segmentations.segmentation_from_node(node, volume).label_map()
    np.testing.assert_array_equal(back.array, phantom.labels.array)
    for segment in drawn.segments:
        segment_id = node.GetSegmentation().GetSegmentIdBySegmentName(segment.name)
        entry = parse_terminology_entry(
            segment_terminology(node.GetSegmentation().GetSegment(segment_id))
        )
        test.assertEqual(entry["type"], segment.structure.type)
    test.delayDisplay("label map -> segmentation -> label map exact, segments coded")


def check_other_grid_refused(test):
    from deepliver.annotation.segmentation import Segmentation
    from deepliver.volume import Grid, GridMismatchError, Volume
    from DeepLiverSlicer.volumes import node_from_volume

    labels = _phantom().labels
    volume = node_from_volume(_phantom().ct, "phantom")
    moved = Grid(labels.shape, labels.origin + 2.0, labels.spacing, labels.direction)
    with test.assertRaises(GridMismatchError):
        segmentations.node_from_segmentation(
            Segmentation.from_label_map(Volume(labels.array, moved)), volume, "refused"
        )
    other = node_from_volume(Volume(labels.array, moved), "other")
    on_other = segmentations.node_from_segmentation(
        Segmentation.from_label_map(Volume(labels.array, moved)), other, "other labels"
    )
    with test.assertRaises(GridMismatchError):
        segmentations.segmentation_from_node(on_other, volume)
    test.delayDisplay("label map or segmentation on another grid refused")


def check_roi_box(test):
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
    test.delayDisplay("ROI <-> LPS box")


def check_dicom_identity(test):
    import slicer

    from DeepLiverSlicer.volumes import node_from_volume

    phantom = _phantom()
    node = node_from_volume(phantom.ct, "phantom")
    test.assertIsNone(dicom_identity.dicom_identity(node))
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
    test.assertEqual((identity.study_uid, identity.series_uid), ("1.2.3.4", "1.2.3.4.5"))
    test.assertEqual(identity.sop_uids, tuple(uids))
    test.assertIsNotNone(identity.fingerprint(phantom.ct.grid))
    test.delayDisplay("DICOM identity from the subject hierarchy")


def check_segments_round_trip(test):
    """Overlapping named segments (Liver holds Tumor 1, 2, ...) -> node -> back, exactly."""
    import numpy as np

    from deepliver.annotation.segmentation import Segmentation
    from deepliver.volume import Grid, GridMismatchError
    from DeepLiverSlicer.volumes import node_from_volume

    phantom = _phantom()
    volume = node_from_volume(phantom.ct, "phantom")
    drawn = Segmentation.from_label_map(phantom.labels)
    test.assertGreater(len(drawn.segments), 1)
    node = segmentations.node_from_segmentation(drawn, volume, "segments")
    test.assertEqual(segmentations.segment_names(node), [s.name for s in drawn.segments])
    back = segmentations.segmentation_from_node(node, volume)
    test.assertEqual(back.segments, drawn.segments)
    np.testing.assert_array_equal(back.masks, drawn.masks)
    # Reusing the node replaces its segmentations.
    single = Segmentation(drawn.grid, drawn.segments[:1], drawn.masks[:1])
    segmentations.node_from_segmentation(single, volume, segmentation_node=node)
    test.assertEqual(segmentations.segment_names(node), [drawn.segments[0].name])
    grid = drawn.grid
    moved = Grid(grid.shape, grid.origin + 1.0, grid.spacing, grid.direction)
    with test.assertRaises(GridMismatchError):
        segmentations.node_from_segmentation(
            Segmentation(moved, single.segments, single.masks), volume
        )
    test.delayDisplay("overlapping segments -> segmentation node -> segments exact")
