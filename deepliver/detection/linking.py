"""Per-slice boxes linked across neighbouring slices into 3D lesion boxes.

A detector sees one slice at a time; a lesion shows up as boxes on consecutive slices that
overlap in the plane. Boxes are linked greedily slice by slice to the open track whose last box
overlaps most (IoU >= ``min_iou``), allowing ``max_gap`` missed slices; each track becomes one
3D box (the union of its boxes over its slice range) scored by the mean of its
``SCORED_SLICES`` best slice scores, a missing slice counting as 0: a lesion of 10 mm spans
about four slices of the detectors' 2.5 mm grid, while a false box is mostly a brief flicker.

The detectors miss stretches of a large lesion's slices, so a track bridged one gap broke in
two, each with a third of the lesion's height and a 3D box that missed it (IoU < 0.3). Linked
over two missed slices and scored by the four best (was one and three), on per-slice boxes of
validation phantoms 100-139 at one false positive per scan, Faster R-CNN 0.7.0 went from 0.426
to 0.557 of 61 lesions (held out, seeds 0-19: 0.553 to 0.632 of 38), YOLO 0.7.0 0.443 to
0.443 (0.500 to 0.553). For Faster R-CNN four best slices beat three at every link IoU
(0.1-0.3) and gap (1-3) tried; for YOLO they were within one lesion of three. Before that,
three best slices held more lesions than the best slice alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from torchvision.ops import box_iou

LINK_IOU = 0.3
MAX_GAP = 2
SCORED_SLICES = 4


@dataclass
class Track:
    """One lesion's boxes, slice by slice: index k -> (x0, y0, x1, y1) pixel edges."""

    boxes: dict[int, np.ndarray] = field(default_factory=dict)
    scores: dict[int, float] = field(default_factory=dict)

    @property
    def last(self) -> int:
        return max(self.boxes)

    @property
    def score(self) -> float:
        best = sorted(self.scores.values(), reverse=True)[:SCORED_SLICES]
        return sum(best) / SCORED_SLICES

    def box_ijk(self) -> tuple[np.ndarray, np.ndarray]:
        """(start, stop) voxel edges as (i, j, k): columns, rows, slices."""
        stacked = np.stack(list(self.boxes.values()))
        start = np.array([stacked[:, 0].min(), stacked[:, 1].min(), min(self.boxes)])
        stop = np.array([stacked[:, 2].max(), stacked[:, 3].max(), self.last + 1])
        return start.astype(np.float64), stop.astype(np.float64)


def link_slices(
    per_slice: dict[int, tuple[np.ndarray, np.ndarray]],
    min_iou: float = LINK_IOU,
    max_gap: int = MAX_GAP,
) -> list[Track]:
    """``per_slice``: k -> (boxes (n, 4), scores (n,)). Tracks ordered by score, best first."""
    import torch

    open_tracks: list[Track] = []
    done: list[Track] = []
    for k in sorted(per_slice):
        boxes, scores = per_slice[k]
        still_open = []
        for track in open_tracks:
            (still_open if k - track.last <= max_gap + 1 else done).append(track)
        open_tracks = still_open
        for index in np.argsort(-np.asarray(scores)):
            box = np.asarray(boxes[index], dtype=np.float64)
            best, best_iou = None, min_iou
            for track in (t for t in open_tracks if t.last < k):  # one box per slice per track
                last = torch.from_numpy(track.boxes[track.last][None])
                iou = float(box_iou(last, torch.from_numpy(box[None]))[0, 0])
                if iou >= best_iou:
                    best, best_iou = track, iou
            if best is None:
                best = Track()
                open_tracks.append(best)
            best.boxes[k] = box
            best.scores[k] = float(scores[index])
    done += open_tracks
    return sorted(done, key=lambda t: -t.score)
