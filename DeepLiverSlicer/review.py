"""The Slicer side of a review session: the embedded Segment Editor, slice views, outlines,
one ROI box per segment, and shortcuts.

The rules (names, colours, what to restore, box extents, the next series) are in
:mod:`deepliver.annotation.review` and :mod:`deepliver.annotation.worklist`; this module only
makes the Slicer calls.
"""

from __future__ import annotations

import numpy as np

from deepliver.volume import flip_lps_ras

# The effects a radiologist needs, in toolbar order (their registered names, which Slicer does
# not translate); every other effect is hidden.
EFFECTS = ("Paint", "Draw", "Erase", "Threshold", "Islands", "Fill between slices", "Smoothing")
EDITOR_NODE_TAG = "DeepLiverReviewSegmentEditor"
# Node attribute naming the segment an ROI box belongs to.
ROI_SEGMENT_ATTRIBUTE = "DeepLiver.segment"

# Keyboard shortcuts of the Review module. Slicer 5.12 binds Ctrl+S (save data), Ctrl+O, Ctrl+W,
# Ctrl+F, Ctrl+H, Ctrl+B, Ctrl+0..6, Ctrl+Shift+A/T/Space (markups toolbar) and
# Ctrl+Shift+Left/Right/Down (sequences); these are free.
SHORTCUTS = {
    "save draft": "Ctrl+Shift+S",
    "complete": "Ctrl+Shift+C",
    "save and next": "Ctrl+Shift+N",
}


def shortcut_help() -> str:
    return ", ".join(f"{keys}: {action}" for action, keys in SHORTCUTS.items())


def roi_name(segment_name: str) -> str:
    return f"{segment_name} box"


# --- Slicer ------------------------------------------------------------------------------


def segment_editor_node():
    """The Review module's segment editor node: painting one segment never erases another, so
    the liver keeps the voxels of the tumors inside it."""
    import slicer

    node = slicer.mrmlScene.GetSingletonNode(EDITOR_NODE_TAG, "vtkMRMLSegmentEditorNode")
    if node is None:
        node = slicer.vtkMRMLSegmentEditorNode()
        node.SetSingletonTag(EDITOR_NODE_TAG)
        node = slicer.mrmlScene.AddNode(node)
    node.SetOverwriteMode(slicer.vtkMRMLSegmentEditorNode.OverwriteNone)
    return node


def configure_editor(editor) -> None:
    """Restrict a ``qMRMLSegmentEditorWidget`` to :data:`EFFECTS` and the module's own
    series and structure buttons."""
    import slicer

    editor.setMRMLScene(slicer.mrmlScene)
    editor.setMRMLSegmentEditorNode(segment_editor_node())
    editor.setEffectNameOrder(list(EFFECTS))
    editor.unorderedEffectsVisible = False
    editor.setSegmentationNodeSelectorVisible(False)
    editor.setSourceVolumeNodeSelectorVisible(False)
    editor.setSwitchToSegmentationsButtonVisible(False)
    editor.setAddRemoveSegmentButtonsVisible(False)  # "Add tumor" / "Delete" name segments
    editor.jumpToSelectedSegmentEnabled = True


def new_editor():
    """A configured ``qMRMLSegmentEditorWidget`` (add it to a layout)."""
    import slicer

    editor = slicer.qMRMLSegmentEditorWidget()
    editor.setMaximumNumberOfUndoStates(10)
    configure_editor(editor)
    return editor


def editor_enter(editor) -> None:
    """What the Segment Editor module does on entering: effect and segment shortcuts."""
    editor.installKeyboardShortcuts()
    if editor.mrmlSegmentEditorNode() is None or editor.mrmlSegmentEditorNode().GetScene() is None:
        editor.setMRMLSegmentEditorNode(segment_editor_node())
    editor.updateWidgetFromMRML()


def editor_exit(editor) -> None:
    editor.setActiveEffect(None)
    editor.uninstallKeyboardShortcuts()
    editor.removeViewObservations()


def show_in_editor(editor, segmentation_node, volume_node) -> None:
    import slicer

    if editor.mrmlSegmentEditorNode() is None or editor.mrmlSegmentEditorNode().GetScene() is None:
        editor.setMRMLSegmentEditorNode(segment_editor_node())
    editor.setSegmentationNode(segmentation_node)
    editor.setSourceVolumeNode(volume_node)
    slicer.util.setSliceViewerLayers(background=volume_node, fit=True)


def select_segment(editor, segmentation_node, name: str) -> None:
    segment_id = segmentation_node.GetSegmentation().GetSegmentIdBySegmentName(name)
    if segment_id:
        editor.setCurrentSegmentID(segment_id)


def current_segment_name(editor, segmentation_node) -> str | None:
    segment_id = editor.currentSegmentID()
    if not segment_id or segmentation_node is None:
        return None
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    return segment.GetName() if segment else None


def jump_to(point_lps) -> None:
    """Centre every slice view on an LPS point."""
    import slicer

    r, a, s = (float(v) for v in flip_lps_ras(np.asarray(point_lps, dtype=np.float64)))
    slicer.vtkMRMLSliceNode.JumpAllSlices(
        slicer.mrmlScene, r, a, s, slicer.vtkMRMLSliceNode.CenteredJumpSlice
    )


def set_outlines(segmentation_node, outline: bool, fill: bool) -> None:
    """Show or hide the segments' outlines and fill in the slice views."""
    display = segmentation_node.GetDisplayNode() if segmentation_node else None
    if display is not None:
        display.SetVisibility2DOutline(bool(outline))
        display.SetVisibility2DFill(bool(fill))


# --- boxes: one ROI per segment ------------------------------------------------------------


def segment_rois(segment_name: str | None = None) -> list:
    """The ROI nodes that are boxes of segments (of ``segment_name`` only, when given)."""
    import slicer

    rois = slicer.util.getNodesByClass("vtkMRMLMarkupsROINode")
    boxes = [roi for roi in rois if roi.GetAttribute(ROI_SEGMENT_ATTRIBUTE)]
    if segment_name is not None:
        boxes = [roi for roi in boxes if roi.GetAttribute(ROI_SEGMENT_ATTRIBUTE) == segment_name]
    return boxes


def roi_for_box(record: dict):
    """Show a box record as the ROI of its segment (reused when it exists)."""
    from DeepLiverSlicer.markups import PhysicalBox, roi_from_box

    name = record["segment"]
    existing = segment_rois(name)
    roi = roi_from_box(
        PhysicalBox(record["min"], record["max"]),
        roi_name(name),
        existing[0] if existing else None,
    )
    roi.SetAttribute(ROI_SEGMENT_ATTRIBUTE, name)
    return roi


def place_roi(segment_name: str):
    """An empty ROI for the segment, and the mouse in place mode to draw it in a view."""
    import slicer

    for roi in segment_rois(segment_name):
        slicer.mrmlScene.RemoveNode(roi)
    roi = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsROINode", roi_name(segment_name))
    roi.CreateDefaultDisplayNodes()
    roi.SetAttribute(ROI_SEGMENT_ATTRIBUTE, segment_name)
    logic = slicer.modules.markups.logic()
    logic.SetActiveList(roi)
    logic.StartPlaceMode(False)
    return roi


def box_records(segment_names) -> list[dict]:
    """The box records of the placed ROIs whose segment still exists."""
    from deepliver.annotation.review import box_record
    from DeepLiverSlicer.markups import box_from_roi

    names = set(segment_names)
    records = []
    for roi in segment_rois():
        name = roi.GetAttribute(ROI_SEGMENT_ATTRIBUTE)
        if name not in names or roi.GetNumberOfDefinedControlPoints() == 0:
            continue
        box = box_from_roi(roi)
        if np.all(box.size > 0):
            records.append(box_record(name, box.minimum, box.maximum))
    return sorted(records, key=lambda r: r["segment"])


def remove_rois(segment_name: str | None = None) -> None:
    import slicer

    for roi in segment_rois(segment_name):
        slicer.mrmlScene.RemoveNode(roi)


def remove_nodes(*nodes) -> None:
    """Take nodes out of the scene (those already gone or None are skipped)."""
    import slicer

    for node in nodes:
        if node is not None and node.GetScene() is not None:
            slicer.mrmlScene.RemoveNode(node)


def install_shortcuts(parent, actions: dict) -> list:
    """``qt.QShortcut`` objects on ``parent`` for :data:`SHORTCUTS`; ``actions`` maps each
    action name to its callable. Keep the returned list (a shortcut dies with its object)."""
    import qt

    shortcuts = []
    for action, keys in SHORTCUTS.items():
        shortcut = qt.QShortcut(qt.QKeySequence(keys), parent)
        shortcut.connect("activated()", actions[action])
        shortcuts.append(shortcut)
    return shortcuts
