"""Training images for the demo detector, as DETR training batches.

Half of the images are the synthetic camera's own scenes
(:meth:`SyntheticScene.random_frame`); the other half come from
:class:`ShapeCanvas`, a second, independent generator that covers what the
camera does not draw: uniform noise and blurred photo-like backgrounds, flat
colours, axis-aligned squares, upright and stretched triangles, any colour
(dark ones too), aliased and anti-aliased edges, thin and thick outlines,
sizes from 4% to 45% of the short side, overlaps and shapes cut by the frame
edge. Both render at camera-like sizes, 16:9 and 4:3, and are resized to the
detector's one input size (aspect ratio not kept), as its image processor
does at inference.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from stream_detect.sources.synthetic import LABELS, MIN_VISIBLE, SyntheticScene

INPUT_SIZE = (320, 192)  # (width, height) the image processor resizes every image to
RENDER_SIZES = ((640, 360), (480, 270), (854, 480), (640, 480), (320, 240), (800, 600))  # 16:9 and 4:3
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
_NOISE_BANK: np.ndarray | None = None


@dataclass(frozen=True)
class Sample:
    """One training image at input size: ``(H, W, 3) uint8`` RGB, class ids ``(N,)``, boxes ``(N, 4)`` xyxy."""

    image: np.ndarray
    classes: np.ndarray
    boxes: np.ndarray


def _photo_like(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    cells = (int(rng.integers(3, 12)), int(rng.integers(3, 12)))
    low = rng.integers(int(rng.integers(0, 60)), int(rng.integers(150, 256)), (*cells, 3)).astype(np.uint8)
    # blurred at an eighth of the size, then enlarged: the same smooth image, ~20x cheaper
    small = cv2.resize(low, (max(2, width // 8), max(2, height // 8)), interpolation=cv2.INTER_CUBIC)
    small = cv2.GaussianBlur(small, (0, 0), float(rng.uniform(3, 25)) * width / 640 / 8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def _noise(rng: np.random.Generator, height: int, width: int, sigma: float) -> np.ndarray:
    """Gaussian pixel noise, cut from a bank drawn once (drawing it per image costs more than the rest)."""
    global _NOISE_BANK
    if _NOISE_BANK is None:
        _NOISE_BANK = np.random.default_rng(12345).normal(0, 1, (640, 1024, 3)).astype(np.float32)
    y, x = int(rng.integers(0, 640 - height + 1)), int(rng.integers(0, 1024 - width + 1))
    return _NOISE_BANK[y : y + height, x : x + width] * sigma


def _textured(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    cells = (max(2, height // int(rng.integers(15, 80))), max(2, width // int(rng.integers(15, 80))))
    low = rng.integers(0, 160, (*cells, 3)).astype(np.uint8)
    image = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = float(rng.uniform(0, math.pi))
    period = float(rng.uniform(8, 80))
    image += float(rng.uniform(0, 25)) * np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period)[
        ..., None]
    image += float(rng.uniform(-40, 40)) * (xx / width)[..., None]
    image += _noise(rng, height, width, float(rng.uniform(0, 15)))
    return np.clip(image, 0, 255).astype(np.uint8)


def background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Uniform noise, photo-like light and shade, textures, flat colours, and mixtures of them."""
    kind = int(rng.integers(5))
    if kind == 0:
        low, high = sorted(int(v) for v in rng.integers(0, 256, 2))
        if rng.random() < 0.6:
            low, high = 0, 255
        return rng.integers(low, high + 1, (height, width, 3), dtype=np.uint8)
    if kind == 1:
        return _photo_like(rng, width, height)
    if kind == 2:
        return _textured(rng, width, height)
    if kind == 3:
        flat = np.empty((height, width, 3), np.float32)
        flat[:] = rng.integers(0, 256, 3)
        flat += _noise(rng, height, width, float(rng.uniform(0, 20)))
        return np.clip(flat, 0, 255).astype(np.uint8)
    blend = float(rng.uniform(0.2, 0.8))
    noise = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return cv2.addWeighted(_photo_like(rng, width, height), blend, noise, 1 - blend, 0)


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    if rng.random() < 0.5:
        return tuple(int(c) for c in rng.integers(0, 256, 3))  # type: ignore[return-value]
    hsv = np.array([[[rng.integers(0, 180), rng.integers(60, 256), rng.integers(80, 256)]]], np.uint8)
    r, g, b = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]
    return int(r), int(g), int(b)


@dataclass
class _Outline:
    kind: int  # index into LABELS
    centre: tuple[float, float]
    radius: float  # circles only
    points: np.ndarray  # (K, 2) float polygon, squares and triangles
    thickness: int  # -1: filled
    line_type: int

    def draw(self, canvas: np.ndarray, colour: tuple[int, int, int] | int, offset: tuple[float, float] = (0, 0)
             ) -> None:
        line_type = self.line_type if canvas.ndim == 3 else cv2.LINE_8
        if self.kind == 0:
            centre = (round((self.centre[0] - offset[0]) * 16), round((self.centre[1] - offset[1]) * 16))
            cv2.circle(canvas, centre, round(self.radius * 16), colour, self.thickness, line_type, shift=4)
            return
        points = np.round((self.points - np.array(offset)) * 16).astype(np.int32)
        if self.thickness < 0:
            cv2.fillPoly(canvas, [points], colour, line_type, shift=4)
        else:
            cv2.polylines(canvas, [points], True, colour, self.thickness, line_type, shift=4)

    def full_area(self) -> int:
        pad = int(self.radius + np.abs(self.points - np.array(self.centre)).max(initial=0)) + abs(self.thickness) + 4
        local = np.zeros((2 * pad + 1, 2 * pad + 1), np.uint8)
        self.draw(local, 1, (self.centre[0] - pad, self.centre[1] - pad))
        return int(local.sum())


def _outline(rng: np.random.Generator, width: int, height: int) -> _Outline:
    short = min(width, height)
    side = float(rng.uniform(0.04, 0.45)) * short
    if rng.random() < 0.8:  # whole, else possibly cut by the frame edge
        cx, cy = float(rng.uniform(side / 2, width - side / 2)), float(rng.uniform(side / 2, height - side / 2))
    else:
        cx, cy = float(rng.uniform(0, width)), float(rng.uniform(0, height))
    kind = int(rng.integers(3))
    thickness = -1 if rng.random() < 0.55 else int(rng.integers(1, max(2, round(side / 8)) + 1))
    line_type = cv2.LINE_AA if rng.random() < 0.5 else cv2.LINE_8
    points = np.zeros((0, 2))
    if kind == 1:
        angle = 0.0 if rng.random() < 0.5 else float(rng.uniform(0, math.pi / 2))
        half = side / 2
        corners = np.array([[-half, -half], [half, -half], [half, half], [-half, half]])
        rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        points = corners @ rotation.T + (cx, cy)
    elif kind == 2:
        if rng.random() < 0.5:  # upright, base as wide as it is high or a little stretched
            half_width, half_height = side / 2, side / 2 * float(rng.uniform(0.8, 1.25))
            points = np.array([[cx, cy - half_height], [cx - half_width, cy + half_height],
                               [cx + half_width, cy + half_height]])
        else:  # equilateral, any rotation
            angle = float(rng.uniform(0, 2 * math.pi))
            radius = side / math.sqrt(3)
            points = np.array([[cx + radius * math.cos(angle + i * 2 * math.pi / 3),
                                cy + radius * math.sin(angle + i * 2 * math.pi / 3)] for i in range(3)])
    return _Outline(kind, (cx, cy), side / 2 if kind == 0 else 0.0, points, thickness, line_type)


class ShapeCanvas:
    """Independent images of circles, squares and triangles with exact ground truth.

    A shape's box is the tight box of its visible pixels, and a shape is listed
    only when at least :data:`MIN_VISIBLE` of it is visible: the synthetic
    camera's rule.
    """

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def render(self, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = self.rng
        image = background(rng, width, height)
        instances = np.zeros((height, width), np.uint8)
        outlines = [_outline(rng, width, height) for _ in range(int(rng.integers(1, 9)))]
        for index, outline in enumerate(outlines, start=1):
            outline.draw(image, _colour(rng))
            outline.draw(instances, index)
        counts = np.bincount(instances.ravel(), minlength=len(outlines) + 1)
        classes, boxes = [], []
        for index, outline in enumerate(outlines, start=1):
            if counts[index] == 0 or counts[index] < MIN_VISIBLE * outline.full_area():
                continue
            ys, xs = np.nonzero(instances == index)
            classes.append(outline.kind)
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        return image, np.array(classes, np.int64), np.array(boxes, np.float32).reshape(-1, 4)


class TrainingImages:
    """Seeded stream of :class:`Sample`: the camera's scenes (``camera_share`` of them) and :class:`ShapeCanvas`
    images."""

    def __init__(self, seed: int, camera_share: float = 0.5) -> None:
        self.rng = np.random.default_rng(seed)
        self.camera_share = camera_share
        self.canvas = ShapeCanvas(seed + 1)
        self.scenes = {
            size: SyntheticScene(*size, seed=seed * 100 + i, shapes=5) for i, size in enumerate(RENDER_SIZES)
        }

    def sample(self, input_size: tuple[int, int] = INPUT_SIZE) -> Sample:
        width, height = RENDER_SIZES[int(self.rng.integers(len(RENDER_SIZES)))]
        if self.rng.random() < self.camera_share:
            frame, truths = self.scenes[(width, height)].random_frame()
            classes = np.array([LABELS.index(t.label) for t in truths], np.int64)
            boxes = np.array([t.box for t in truths], np.float32).reshape(-1, 4)
        else:
            frame, classes, boxes = self.canvas.render(width, height)
        interpolation = cv2.INTER_AREA if self.rng.random() < 0.5 else cv2.INTER_LINEAR
        image = cv2.resize(frame, input_size, interpolation=interpolation)
        scale = np.array([input_size[0] / width, input_size[1] / height] * 2, np.float32)
        return Sample(image, classes, boxes * scale)


def batches(seed: int, batch_size: int, camera_share: float
            ) -> Iterator[tuple[torch.Tensor, list[dict[str, torch.Tensor]]]]:
    """Endless seeded batches: normalised pixels ``(B, 3, H, W)`` and DETR targets (cxcywh in [0, 1])."""
    images = TrainingImages(seed, camera_share)
    while True:
        yield to_batch([images.sample() for _ in range(batch_size)])


def to_batch(samples: list[Sample]) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    pixels = np.stack([s.image for s in samples]).astype(np.float32) / 255
    height, width = pixels.shape[1:3]
    normalised = torch.from_numpy(((pixels - MEAN) / STD).transpose(0, 3, 1, 2).copy())
    targets = []
    for sample in samples:
        boxes = torch.from_numpy(sample.boxes) / torch.tensor([width, height, width, height])
        cxcywh = torch.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2,
                              boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], dim=1)
        targets.append({"class_labels": torch.from_numpy(sample.classes), "boxes": cxcywh})
    return normalised, targets


class BatchStream(torch.utils.data.IterableDataset):
    """:func:`batches` in a DataLoader worker process, so drawing overlaps training."""

    def __init__(self, seed: int, batch_size: int, camera_share: float) -> None:
        self.seed, self.batch_size, self.camera_share = seed, batch_size, camera_share

    def __iter__(self) -> Iterator[tuple[torch.Tensor, list[dict[str, torch.Tensor]]]]:
        torch.set_num_threads(1)
        cv2.setNumThreads(1)
        return batches(self.seed, self.batch_size, self.camera_share)

