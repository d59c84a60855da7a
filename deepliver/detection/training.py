"""Training and running the detectors on 2.5D slices of cached liver crops.

The cache is the tumor stage's (see :mod:`deepliver.training.data`): each phantom's liver box,
blanked beyond the liver, on the detector's grid, windowed to uint8, with the tumor mask. A
training slice is drawn with a lesion at ``POSITIVE_FRACTION`` and anywhere in the crop
otherwise (slices without lesions teach the detectors what is not a tumor). A lesion slice is
drawn lesion first, then one of its slices: drawn slice first, a lesion of 60 mm would come up
five times as often as one of 12 mm, and the small ones are those the detectors missed. Its
boxes come from the tumor mask with OpenCV (:func:`deepliver.detection.boxes.boxes_from_mask`).
Slices are put in a square canvas of the card's size: at a random place in training, at the
origin at run time.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from deepliver.detection.boxes import boxes_from_mask
from deepliver.detection.losses import yolo_loss
from deepliver.detection.metrics import average_precision
from deepliver.models.card import ModelCard

POSITIVE_FRACTION = 0.5
VALIDATION_SLICES = 40  # per case: all slices with lesions up to this, then others
SCORE_THRESHOLD = 0.05


def stack(image: np.ndarray, k: int, context: int) -> np.ndarray:
    """Slice k and ``context`` neighbours each side (edges repeated): (channels, y, x)."""
    ks = np.clip(np.arange(k - context, k + context + 1), 0, image.shape[0] - 1)
    return np.asarray(image[ks])


def place(planes: np.ndarray, size: int, start_yx: tuple[int, int]) -> np.ndarray:
    """``planes`` (c, y, x) seen through a size x size window starting at ``start_yx`` of the
    slice (negative: the slice lands inside the canvas); zeros elsewhere."""
    canvas = np.zeros((planes.shape[0], size, size), dtype=planes.dtype)
    y0, x0 = start_yx
    ys, xs = max(0, y0), max(0, x0)
    ye, xe = min(planes.shape[1], y0 + size), min(planes.shape[2], x0 + size)
    if ye > ys and xe > xs:
        canvas[:, ys - y0 : ye - y0, xs - x0 : xe - x0] = planes[:, ys:ye, xs:xe]
    return canvas


def boxes_in(mask: np.ndarray) -> np.ndarray:
    """(n, 4) float32 pixel-edge boxes of the mask's components."""
    found = boxes_from_mask(mask)
    return np.array([[b.xmin, b.ymin, b.xmax, b.ymax] for b in found], np.float32).reshape(-1, 4)


class DetectionTask:
    """What the training loop needs from a detector: a batch loss and a validation score."""

    def __init__(self, card: ModelCard, batch: int, device=None) -> None:
        self.card = card
        self.metric = card.validation_metric
        self.batch = batch
        self.device = torch.device(device or "cpu")
        self.size = int(card.roi_size[0])
        self._lesions: dict[int, list[range]] = {}

    def lesions(self, case) -> list[range]:
        """Each lesion's (3D component's) slice range, found once per case."""
        if case.seed not in self._lesions:
            components, _ = ndimage.label(np.asarray(case.target))
            found = ndimage.find_objects(components)
            self._lesions[case.seed] = [range(box[0].start, box[0].stop) for box in found]
        return self._lesions[case.seed]

    def lesion_slices(self, case) -> np.ndarray:
        """Slice indices with a lesion, ascending."""
        return np.unique([k for lesion in self.lesions(case) for k in lesion]).astype(np.int64)

    def loss(self, network, batch, generator: torch.Generator):
        """Jittered on the device (``generator`` is the device's) and the detector's loss."""
        images, boxes = batch
        images = _jitter(images.to(self.device, non_blocking=True), generator)
        boxes = [b.to(self.device) for b in boxes]
        if self.card.architecture == "fasterrcnn":
            labels = [torch.ones(len(b), dtype=torch.int64, device=self.device) for b in boxes]
            targets = [{"boxes": b, "labels": n} for b, n in zip(boxes, labels, strict=True)]
            return sum(network(list(images), targets).values())
        detector = getattr(network, "module", network)  # under DDP: anchors, decode
        return yolo_loss(detector, network(images), boxes)

    def draw(self, cases, rng) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """A batch of slices and their boxes, on the CPU (beside a GPU, drawn ahead in a thread)."""
        images, boxes = [], []
        for _ in range(self.batch):
            case = cases[int(rng.integers(len(cases)))]
            lesions = self.lesions(case)
            if lesions and rng.random() < POSITIVE_FRACTION:
                k = int(rng.choice(lesions[int(rng.integers(len(lesions)))]))
            else:
                k = int(rng.integers(case.image.shape[0]))
            start = [_random_start(n, self.size, rng) for n in case.image.shape[1:]]
            planes = stack(case.image, k, self.card.context_slices)
            images.append(place(planes, self.size, start))
            target = place(np.asarray(case.target[k : k + 1]), self.size, start)[0]
            boxes.append(torch.from_numpy(boxes_in(target)))
        return torch.from_numpy(np.stack(images)).float().div_(255.0), boxes

    def validate(self, network, cases) -> tuple[float, list[float]]:
        """Per-slice AP at IoU 0.5 over the validation cases' chosen slices (pooled)."""
        detections, truths = [], []
        for case in cases:
            for k in self.validation_slices(case):
                planes = stack(case.image, k, self.card.context_slices)
                image = place(planes, self.size, (0, 0))
                truths.append(
                    boxes_in(place(np.asarray(case.target[k : k + 1]), self.size, (0, 0))[0])
                )
                detections.extend(detect(network, self.card, image[None], self.device))
        score = average_precision(detections, truths)
        return (0.0 if score is None else score), []

    def finish(self, network, items) -> dict:
        """The operating point (card ``lesion_score``) chosen on the validation cases, in the
        liver the bundled cascade finds there, as `deepliver segment --detector` will run
        it: the true liver hides the false positives that a liver model's leaks (IVC, gut)
        bring, and a point chosen there let through twice the budget on held-out scans."""
        from deepliver.detection.operating_point import choose_operating_point, scan_case

        liver_of, liver_name = liver_finder(self.device)
        scans = []
        for item in items:
            ct, labels = item.load()
            scans.append(scan_case(ct, labels, liver_of(ct), network, self.card, self.device))
        point = choose_operating_point(scans)
        metrics = {**point.as_metrics(), "validation_liver": liver_name}
        return {"lesion_score": point.lesion_score, "metrics": metrics}

    def validation_slices(self, case) -> list[int]:
        """Slices with lesions (up to VALIDATION_SLICES), then every third other slice."""
        positives = [int(k) for k in self.lesion_slices(case)[:VALIDATION_SLICES]]
        taken = set(positives)
        others = [k for k in range(0, case.image.shape[0], 3) if k not in taken]
        return positives + others[: max(0, VALIDATION_SLICES - len(positives))]


def liver_finder(device):
    """(CT -> liver mask, its models' names): where the registered unet2d cascade looked for
    tumors (its coarse liver and the tumors), the mask `deepliver segment --detector` hands the
    detector."""
    from deepliver.inference.cascade import load_cascade, segment

    models = load_cascade("unet2d", str(device))
    names = " + ".join(f"{card.name} {card.version}" for card in models.tumor_search_cards)
    return (lambda ct: segment(ct, models).tumor_search), names


def detect(network, card: ModelCard, images: np.ndarray, device="cpu"):
    """Per image (boxes (n, 4) pixel edges, scores (n,)) for uint8 (batch, c, size, size)."""
    tensor = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0).to(device)
    was_training = network.training
    network.eval()
    with torch.inference_mode():
        if card.architecture == "fasterrcnn":
            results = network(list(tensor))
        else:
            results = network.detect(tensor, SCORE_THRESHOLD)
    network.train(was_training)
    return [(r["boxes"].cpu().numpy(), r["scores"].cpu().numpy()) for r in results]


def _jitter(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Intensity scale and shift, and noise, per image (the boxes do not move); on the device
    of ``images`` and ``generator``."""
    n, device = images.shape[0], generator.device
    scale = 0.85 + 0.3 * torch.rand(n, 1, 1, 1, generator=generator, device=device)
    shift = -0.08 + 0.16 * torch.rand(n, 1, 1, 1, generator=generator, device=device)
    noise = 0.03 * torch.rand(n, 1, 1, 1, generator=generator, device=device)
    noisy = (
        images * scale
        + shift
        + noise * torch.randn(images.shape, generator=generator, device=device)
    )
    return noisy.clamp_(0.0, 1.0)


def _random_start(extent: int, size: int, rng) -> int:
    """Where the window starts: the slice somewhere inside the canvas, or a random window."""
    if extent <= size:
        return -int(rng.integers(0, size - extent + 1))
    return int(rng.integers(0, extent - size + 1))
