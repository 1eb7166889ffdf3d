"""Motion gate cost per frame, against its 3 ms goal for a 1280x720 frame.

``python -m stream_detect.bench.motion`` prints, for 1280x720 and 640x360
frames, the median and 99th percentile milliseconds of
:meth:`~stream_detect.motion.MotionGate.observe` and their ratio to the goal,
then the cost of three ways of shrinking a frame to the compared 320 pixels
across: one ``cv2.INTER_AREA`` resize of the RGB frame, a 2x strided
subsample before that resize, and grey first then exact 2x2 halvings (what
the gate does). The scene is a textured still background with fresh sensor
noise in every frame and a disc moving across it; the first frames are a
warm-up and are not timed. Each figure is given twice: wall time, and the
process's CPU time over the same call (all its threads, OpenCV's included).
The machine's load average is printed with them: on a busy machine the
wall time's 99th percentile is mostly time spent waiting for a core, which
the CPU time leaves out.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import cv2
import numpy as np

from ..motion import MotionConfig, MotionGate

T = TypeVar("T")

GOAL_MS = 3.0
SIZES = ((1280, 720), (640, 360))
FPS = 10.0
WARMUP_FRAMES = 20
POOL_FRAMES = 24  # distinct frames, reused in turn: the disc jumps back once per round, as a real scene might
COMPARED_WIDTH = MotionConfig().width


@dataclass(frozen=True)
class Figures:
    """Milliseconds per frame of one measured run."""

    what: str
    size: tuple[int, int]
    frames: int
    median_ms: float
    p99_ms: float
    cpu_median_ms: float
    cpu_p99_ms: float

    def line(self) -> str:
        width, height = self.size
        return (f"{self.what:<34} {width:>4}x{height:<4} {self.frames:>5} frames  wall median {self.median_ms:6.3f} ms"
                f" p99 {self.p99_ms:6.3f} ms (/goal {self.median_ms / GOAL_MS:4.2f} {self.p99_ms / GOAL_MS:4.2f})"
                f"  cpu median {self.cpu_median_ms:6.3f} ms p99 {self.cpu_p99_ms:6.3f} ms"
                f" (/goal {self.cpu_median_ms / GOAL_MS:4.2f} {self.cpu_p99_ms / GOAL_MS:4.2f})")


def scene_frames(width: int, height: int, count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` RGB frames of a still textured scene with noise and a disc moving 1% of the width per frame."""
    rng = np.random.default_rng(seed)
    low = rng.integers(20, 120, (max(2, height // 30), max(2, width // 30), 3), dtype=np.uint8)
    background = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)
    radius = max(2, height // 14)
    frames = []
    for index in range(count):
        image = background.copy()
        x = radius + (index * width // 100) % max(1, width - 2 * radius)
        cv2.circle(image, (x, height // 2), radius, (230, 210, 150), -1, cv2.LINE_AA)
        noise = rng.standard_normal(image.shape, dtype=np.float32) * 9
        frames.append(np.clip(image + noise, 0, 255).astype(np.uint8))
    return frames


class _Timings:
    """Wall and process CPU seconds of each timed call."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def time(self, function: Callable[[], T]) -> T:
        wall, cpu = time.perf_counter(), time.process_time()
        result = function()
        self.cpu.append(time.process_time() - cpu)
        self.wall.append(time.perf_counter() - wall)
        return result

    def figures(self, what: str, size: tuple[int, int]) -> Figures:
        wall = np.array(self.wall[WARMUP_FRAMES:]) * 1000
        cpu = np.array(self.cpu[WARMUP_FRAMES:]) * 1000
        return Figures(what, size, len(wall), float(np.median(wall)), float(np.percentile(wall, 99)),
                       float(np.median(cpu)), float(np.percentile(cpu, 99)))


def time_gate(pool: list[np.ndarray], frames: int) -> tuple[Figures, Counter[str]]:
    """The gate's whole ``observe`` (no masks) over ``pool`` in turn, and how often it gave each reason."""
    height, width = pool[0].shape[:2]
    gate = MotionGate(MotionConfig())
    timings, reasons = _Timings(), Counter[str]()
    for index in range(frames + WARMUP_FRAMES):
        image, t = pool[index % len(pool)], index / FPS
        decision = timings.time(partial(gate.observe, image, t))
        reasons[decision.reason] += 1
    return timings.figures("gate.observe", (width, height)), reasons


def _direct_area(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(cv2.cvtColor(cv2.resize(image, size, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY))


def _strided_area(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return _direct_area(image[::2, ::2], size)


def _grey_halvings(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    halvings = max(0, int(math.log2(image.shape[1] / size[0])))
    for _ in range(halvings):
        grey = cv2.resize(grey, (grey.shape[1] // 2, grey.shape[0] // 2), interpolation=cv2.INTER_AREA)
    if (grey.shape[1], grey.shape[0]) != size:
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    return np.asarray(grey)


DOWNSCALES: dict[str, Callable[[np.ndarray, tuple[int, int]], np.ndarray]] = {
    "shrink: INTER_AREA, then grey": _direct_area,
    "shrink: stride 2, INTER_AREA, grey": _strided_area,
    "shrink: grey, 2x2 halvings (gate)": _grey_halvings,
}


def time_downscales(pool: list[np.ndarray], frames: int) -> list[Figures]:
    """Each way of shrinking ``pool``'s frames to the compared width, alone."""
    height, width = pool[0].shape[:2]
    size = (COMPARED_WIDTH, round(height * COMPARED_WIDTH / width))
    result = []
    for what, shrink in DOWNSCALES.items():
        timings = _Timings()
        for index in range(frames + WARMUP_FRAMES):
            image = pool[index % len(pool)]
            timings.time(partial(shrink, image, size))
        result.append(timings.figures(what, (width, height)))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stream_detect.bench.motion", description=__doc__)
    parser.add_argument("--frames", type=int, default=500, help="timed frames per run (default: 500)")
    parser.add_argument("--cv-threads", type=int, default=None,
                        help="OpenCV's thread count for this run (default: OpenCV's own choice)")
    args = parser.parse_args(argv)
    frames = max(10, args.frames)
    if args.cv_threads is not None:
        cv2.setNumThreads(max(1, args.cv_threads))
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"goal: {GOAL_MS} ms per 1280x720 frame; {WARMUP_FRAMES} warm-up frames; OpenCV {cv2.__version__} "
          f"with {cv2.getNumThreads()} threads; {os.cpu_count()} CPUs, load average {load} (1, 5, 15 min)")
    pools = [scene_frames(width, height, POOL_FRAMES) for width, height in SIZES]
    for pool in pools:
        figures, reasons = time_gate(pool, frames)
        print(f"{figures.line()}  reasons {dict(sorted(reasons.items()))}", flush=True)
    for pool in pools:
        for figures in time_downscales(pool, frames):
            print(figures.line(), flush=True)
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"load average afterwards {load}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
