"""A synthetic camera whose ground truth is known exactly.

Circles, squares and triangles (the labels ``circle``, ``square``,
``triangle``), filled or outlined, in many colours and sizes, move, rotate,
overlap and leave the frame over a textured, drifting, noisy background.

Ground truth: every shape is also drawn, in drawing order, into an instance
mask, so later shapes hide earlier ones exactly as in the image. A shape's
box is the tight box of its *visible* pixels; a shape is listed only when at
least :data:`MIN_VISIBLE` of its area is visible (inside the frame and not
covered), so a box is never asked for a sliver.

It serves the tests, the offline demo, and the training of the demo model
(:meth:`SyntheticScene.random_frame` gives independent frames).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from .base import RawFrame

LABELS = ("circle", "square", "triangle")
MIN_VISIBLE = 0.3


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """One visible shape: label and tight box ``(xmin, ymin, xmax, ymax)``, exclusive max."""

    label: str
    box: tuple[int, int, int, int]


@dataclass(slots=True)
class _Shape:
    kind: int  # index into LABELS
    x: float
    y: float
    radius: float  # circumradius in pixels
    angle: float
    vx: float
    vy: float
    spin: float
    colour: tuple[int, int, int]
    thickness: int  # -1: filled

    def polygon(self) -> np.ndarray:
        if self.kind == 1:
            corners = [self.angle + math.pi / 4 + i * math.pi / 2 for i in range(4)]
        else:
            corners = [self.angle - math.pi / 2 + i * 2 * math.pi / 3 for i in range(3)]
        points = [(self.x + self.radius * math.cos(a), self.y + self.radius * math.sin(a)) for a in corners]
        return np.round(np.array(points) * 16).astype(np.int32)  # 4 fractional bits for cv2

    def draw(self, canvas: np.ndarray, colour: tuple[int, ...] | int) -> None:
        colour = colour if isinstance(colour, tuple) else (colour,) * canvas.shape[2] if canvas.ndim == 3 else colour
        if self.kind == 0:
            cv2.circle(canvas, (round(self.x * 16), round(self.y * 16)), round(self.radius * 16), colour,
                       self.thickness, cv2.LINE_AA if canvas.ndim == 3 else cv2.LINE_8, shift=4)
        elif self.thickness < 0:
            cv2.fillPoly(canvas, [self.polygon()], colour, cv2.LINE_AA if canvas.ndim == 3 else cv2.LINE_8, shift=4)
        else:
            cv2.polylines(canvas, [self.polygon()], True, colour, self.thickness,
                          cv2.LINE_AA if canvas.ndim == 3 else cv2.LINE_8, shift=4)

    def full_area(self, width: int, height: int) -> int:
        """Pixels the shape would cover on an unbounded canvas."""
        pad = int(self.radius) + self.thickness + 4
        size = 2 * pad + 1
        local = _Shape(self.kind, pad + (self.x % 1), pad + (self.y % 1), self.radius, self.angle, 0, 0, 0,
                       self.colour, self.thickness)
        mask = np.zeros((size, size), np.uint8)
        local.draw(mask, 1)
        return int(mask.sum())


class SyntheticScene:
    """Moving shapes over a changing background, with ground truth.

    Args:
        width, height: Frame size.
        seed: Everything is reproducible from it.
        shapes: How many shapes are in play at a time.
    """

    def __init__(self, width: int = 640, height: int = 360, seed: int = 0, shapes: int = 6) -> None:
        self.width, self.height = width, height
        self._rng = np.random.default_rng(seed)
        self._textures = [_texture(self._rng, width, height) for _ in range(3)]
        self._noise = self._rng.normal(0, 9, (height + 64, width + 64, 3)).astype(np.int16)
        self._shapes = [self._spawn(anywhere=True) for _ in range(shapes)]
        self._t = 0

    # -- scene evolution -----------------------------------------------------

    def _spawn(self, anywhere: bool, reach: float = 0.0) -> _Shape:
        """A new shape: anywhere, its centre up to ``reach`` radii past the frame edge, or entering from an edge."""
        rng = self._rng
        short = min(self.width, self.height)
        radius = float(rng.uniform(0.05, 0.22) * short)
        speed = float(rng.uniform(0.3, 2.5)) * short / 360
        heading = float(rng.uniform(0, 2 * math.pi))
        if anywhere:
            past = reach * radius
            x, y = float(rng.uniform(-past, self.width + past)), float(rng.uniform(-past, self.height + past))
        else:  # enter from an edge, heading inwards
            edge = int(rng.integers(4))
            along_x, along_y = float(rng.uniform(0, self.width)), float(rng.uniform(0, self.height))
            x = [-radius, self.width + radius, along_x, along_x][edge]
            y = [along_y, along_y, -radius, self.height + radius][edge]
            heading = math.atan2(self.height / 2 - y, self.width / 2 - x) + float(rng.uniform(-0.6, 0.6))
        return _Shape(
            kind=int(rng.integers(3)), x=x, y=y, radius=radius, angle=float(rng.uniform(0, 2 * math.pi)),
            vx=speed * math.cos(heading), vy=speed * math.sin(heading), spin=float(rng.uniform(-0.05, 0.05)),
            colour=_colour(rng), thickness=-1 if rng.random() < 0.6 else int(rng.integers(2, max(3, short // 40))),
        )

    def step(self) -> None:
        """Advances the scene by one frame; shapes that left the frame are replaced."""
        self._t += 1
        for i, shape in enumerate(self._shapes):
            shape.x += shape.vx
            shape.y += shape.vy
            shape.angle += shape.spin
            margin = shape.radius * 1.5
            if not (-margin < shape.x < self.width + margin and -margin < shape.y < self.height + margin):
                self._shapes[i] = self._spawn(anywhere=False)

    # -- rendering -----------------------------------------------------------

    def render(self) -> tuple[np.ndarray, list[GroundTruth]]:
        """The current frame (``(H, W, 3) uint8`` RGB) and its ground truth."""
        image = self._background()
        instances = np.zeros((self.height, self.width), np.uint8)
        for index, shape in enumerate(self._shapes, start=1):
            shape.draw(image, shape.colour)
            shape.draw(instances, index)
        return image, self._ground_truth(instances)

    def next_frame(self) -> tuple[np.ndarray, list[GroundTruth]]:
        frame = self.render()
        self.step()
        return frame

    def random_frame(self) -> tuple[np.ndarray, list[GroundTruth]]:
        """An independent frame: new shapes and a new background phase (for training).

        Centres reach half a radius past the frame edge, so shapes are also cut
        by it as far as the camera shows them while they enter and leave.
        """
        count = int(self._rng.integers(1, 2 * len(self._shapes) // 1 + 1))
        self._shapes = [self._spawn(anywhere=True, reach=0.5) for _ in range(max(1, min(count, 10)))]
        self._t = int(self._rng.integers(0, 10_000))
        return self.render()

    def _background(self) -> np.ndarray:
        t = self._t
        first = self._textures[(t // 150) % len(self._textures)]
        second = self._textures[(t // 150 + 1) % len(self._textures)]
        blend = (t % 150) / 150
        base = cv2.addWeighted(first, 1 - blend, second, blend, 0)
        dx, dy = (t * 3) % 64, (t * 2) % 64
        noisy = base.astype(np.int16) + self._noise[dy : dy + self.height, dx : dx + self.width]
        return np.clip(noisy, 0, 255).astype(np.uint8)

    def _ground_truth(self, instances: np.ndarray) -> list[GroundTruth]:
        counts = np.bincount(instances.ravel(), minlength=len(self._shapes) + 1)
        truths = []
        for index, shape in enumerate(self._shapes, start=1):
            visible = int(counts[index])
            if visible == 0 or visible < MIN_VISIBLE * shape.full_area(self.width, self.height):
                continue
            ys, xs = np.nonzero(instances == index)
            truths.append(GroundTruth(LABELS[shape.kind], (int(xs.min()), int(ys.min()),
                                                           int(xs.max()) + 1, int(ys.max()) + 1)))
        return truths


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    hue = int(rng.integers(0, 180))
    saturation = int(rng.integers(90, 256))
    value = int(rng.integers(110, 256))
    hsv = np.array([[[hue, saturation, value]]], np.uint8)
    r, g, b = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]
    return int(r), int(g), int(b)


def _texture(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Smooth blotches, stripes and a gradient: a background with structure."""
    low = rng.integers(20, 120, (max(2, height // 40), max(2, width // 40), 3), dtype=np.uint8)
    image = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = float(rng.uniform(0, math.pi))
    period = float(rng.uniform(12, 60))
    stripes = 12 * np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period)
    gradient = 25 * (xx / max(1, width - 1))
    image += (stripes + gradient)[..., None]
    return np.clip(image, 0, 255).astype(np.uint8)


class SyntheticSource:
    """The synthetic camera as a :class:`~stream_detect.sources.base.Source`."""

    live = True

    def __init__(self, stream_id: str, width: int, height: int, fps: float, seed: int, frames: int | None) -> None:
        self.stream_id = stream_id
        self.width, self.height, self.fps, self.seed, self.frames = width, height, fps, seed, frames
        self._scene: SyntheticScene | None = None

    def open(self) -> SyntheticReader:
        if self._scene is None:  # a reconnect continues the same scene
            self._scene = SyntheticScene(self.width, self.height, self.seed)
        return SyntheticReader(self._scene, self.fps, self.frames)


class SyntheticReader:
    """Yields scene frames paced to ``fps`` on the wall clock."""

    def __init__(self, scene: SyntheticScene, fps: float, frames: int | None) -> None:
        self.scene = scene
        self.fps: float | None = fps
        self.frames = frames
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[RawFrame]:
        interval = 1.0 / (self.fps or 15.0)
        started = time.monotonic()
        count = 0
        while not self._closed.is_set() and (self.frames is None or count < self.frames):
            due = started + count * interval
            if self._closed.wait(max(0.0, due - time.monotonic())):
                return
            image, _ = self.scene.next_frame()
            yield RawFrame(image=image, pts=count * interval)
            count += 1

    def close(self) -> None:
        self._closed.set()
