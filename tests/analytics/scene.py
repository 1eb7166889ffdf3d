"""A scripted synthetic-camera scene with known events, and a noisy detector made from its ground truth.

The synthetic camera (:mod:`stream_detect.sources.synthetic`) draws the
frames and gives each visible shape's tight box; here its shapes follow
scripted paths instead of random ones, so the frame of every crossing,
entry and exit is known. At 10 fps, 640x360:

- ``A``, a circle, runs right along the top and crosses the gate (in);
- ``B``, a square, runs left and crosses the gate (out);
- ``C``, a triangle, passes below the gate's end (no crossing), enters the
  porch, stays 4.5 s (loitering), and leaves;
- ``D``, a circle, comes down to 2 px above the porch's top border and goes
  back: it only touches the border.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from stream_detect.records import Detections
from stream_detect.sources.synthetic import LABELS, GroundTruth, SyntheticScene, _Shape

WIDTH, HEIGHT, FPS, FRAMES = 640, 360, 10.0, 140
GATE = {"name": "gate", "points": [[0.5, 0], [0.5, 0.6]]}  # x = 320, from y = 0 down to y = 216
PORCH = {"name": "porch", "polygon": [[0.7, 0.55], [1, 0.55], [1, 1], [0.7, 1]], "loiter_s": 2.0}  # x > 448, y > 198
Path = Callable[[int], tuple[float, float]]


def _clamped(start: float, speed: float, stop: float) -> Callable[[int], float]:
    return lambda f: max(stop, start + speed * f) if speed < 0 else min(stop, start + speed * f)


def _c_x(f: int) -> float:
    if f < 76:
        return 150 + 5 * f
    if f < 106:
        return 530
    return 530 - 6 * (f - 106)


def _d_y(f: int) -> float:
    if f < 50:
        return 40
    if f < 95:
        return 40 + 3 * (f - 50)
    return 175 - 3 * (f - 95)


@dataclass(frozen=True)
class Scripted:
    name: str
    kind: int  # index into LABELS
    radius: float
    path: Path


SHAPES = (
    Scripted("A", 0, 25, lambda f: (_clamped(60, 5, 420)(f), 80)),
    Scripted("B", 1, 28, lambda f: (_clamped(600, -5, 200)(f), 150)),
    Scripted("C", 2, 30, lambda f: (_c_x(f), 300)),
    Scripted("D", 0, 20, lambda f: (580, _d_y(f))),
)


@dataclass(frozen=True)
class SceneFrame:
    index: int
    truths: tuple[tuple[str, GroundTruth], ...]  # (shape name, its visible box)
    image: np.ndarray | None = None  # (H, W, 3) uint8 RGB, when asked for


def render_scene(images: bool = False) -> list[SceneFrame]:
    """The scene's ground truth per frame (and its image), each box named by the shape it belongs to."""
    scene = SyntheticScene(WIDTH, HEIGHT, seed=5, shapes=len(SHAPES))
    colours = [(230, 60, 60), (60, 200, 80), (70, 90, 240), (240, 220, 40)]
    shapes = [_Shape(s.kind, *s.path(0), s.radius, 0.0, 0, 0, 0, colour, -1)
              for s, colour in zip(SHAPES, colours, strict=True)]
    scene._shapes = shapes  # scripted instead of random: positions set per frame below
    frames = []
    for index in range(FRAMES):
        for scripted, shape in zip(SHAPES, shapes, strict=True):
            shape.x, shape.y = scripted.path(index)
        image, truths = scene.render()
        frames.append(SceneFrame(index, tuple((_owner(truth, shapes), truth) for truth in truths),
                                 image if images else None))
        scene._t += 1  # the background drifts as in the camera
    return frames


def _owner(truth: GroundTruth, shapes: list[_Shape]) -> str:
    x = (truth.box[0] + truth.box[2]) / 2
    y = (truth.box[1] + truth.box[3]) / 2
    distances = [math.hypot(shape.x - x, shape.y - y) for shape in shapes]
    return SHAPES[int(np.argmin(distances))].name


def noisy_detections(frame: SceneFrame, rng: np.random.Generator, jitter_px: float = 2.0,
                     miss_rate: float = 0.05) -> tuple[Detections, list[str]]:
    """The detector's view of ``frame``: jittered boxes, noisy scores, some detections missed.

    Returns the detections and, per row, the shape it came from.
    """
    boxes: list[list[float]] = []
    scores, labels, owners = [], [], []
    for owner, truth in frame.truths:
        if rng.random() < miss_rate:
            continue
        boxes.append((np.asarray(truth.box, float) + rng.normal(0, jitter_px, 4)).tolist())
        scores.append(float(np.clip(rng.normal(0.85, 0.06), 0.5, 1.0)))
        labels.append(truth.label)
        owners.append(owner)
    detections = Detections.from_lists(boxes, scores, [LABELS.index(label) for label in labels], labels)
    return detections, owners


def anchor(box: tuple[int, int, int, int]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, float(box[3])
