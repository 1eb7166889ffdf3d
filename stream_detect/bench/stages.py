"""(e) Per-stage costs of one frame: decode, preprocess, forward, postprocess, draw, encode, serialise."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import orjson

from ..detect.hf import HFDetector
from ..record.writer import VideoWriter
from ..records import Detections, Frame
from ..render import draw_detections
from ..serialize import detections_message
from .timing import median_ms

STAGES = ("decode", "preprocess", "forward", "postprocess", "draw", "encode", "serialise")
# Draw and serialise run on at least this many detections, as if objects were in view
# (a model with random weights finds next to none).
MIN_DETECTIONS = 20


def measure_decode(clip: Path, count: int) -> tuple[list[np.ndarray], list[float]]:
    """Decodes ``count`` frames the way ``annotate`` does; returns them and each frame's decode time."""
    images: list[np.ndarray] = []
    times: list[float] = []
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frames = container.decode(stream)
        while len(images) < count:
            started = time.perf_counter()
            try:
                frame = next(frames)
            except StopIteration:
                break
            images.append(frame.to_ndarray(format="rgb24"))
            times.append(time.perf_counter() - started)
    return images, times


def at_least(detections: Detections, count: int, width: int, height: int) -> Detections:
    """``detections`` filled up to ``count`` with boxes spread over the frame."""
    missing = count - len(detections)
    if missing <= 0:
        return detections
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 0.8, (missing, 2)) * (width, height)
    sizes = rng.uniform(0.05, 0.2, (missing, 2)) * (width, height)
    boxes = np.concatenate([corners, corners + sizes], axis=1).astype(np.float32)
    return Detections(
        xyxy=np.concatenate([detections.xyxy, boxes]),
        confidence=np.concatenate([detections.confidence, np.full(missing, 0.9, np.float32)]),
        class_id=np.concatenate([detections.class_id, np.ones(missing, np.int64)]),
        labels=(*detections.labels, *(["person"] * missing)),
    )


class _Clock:
    """Per-stage wall times: ``with clock("stage"): ...``."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {stage: [] for stage in STAGES}
        self.recording = False

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        if self.recording:
            self.times[stage].append(time.perf_counter() - started)


def measure_stages(detector: HFDetector, clip: Path, count: int, threshold: float) -> tuple[dict[str, float], float]:
    """Median milliseconds per frame of each stage, and the model's mean detections per frame.

    The first frame warms up (first calls allocate) and is not counted, except in ``encode``: libx264
    holds frames back for its lookahead and encodes them as later frames arrive or at the final flush,
    so most calls only queue a frame and their median says nothing. Encoding is the mean over every
    frame written, the flush included.
    """
    images, decode_times = measure_decode(clip, count + 1)
    clock = _Clock()
    encoding = 0.0
    found = []
    height, width = images[0].shape[:2]
    with tempfile.TemporaryDirectory(prefix="stream-detect-bench-") as directory:
        writer = VideoWriter(Path(directory) / "stages.mp4", width, height, Fraction(25), fragmented=False,
                             threads=detector.device.file_encoder_threads())  # as annotate encodes
        try:
            for index, image in enumerate(images):
                clock.recording = index > 0
                with clock("preprocess"):
                    inputs = detector.preprocess([image])
                with clock("forward"):
                    outputs = detector.forward(inputs)
                with clock("postprocess"):
                    detections = detector.postprocess(outputs, [(height, width)], threshold)[0]
                found.append(len(detections))
                shown = at_least(detections, MIN_DETECTIONS, width, height)
                with clock("draw"):
                    drawn = draw_detections(image, shown)
                started = time.perf_counter()
                writer.write(drawn, index / 25)
                encoding += time.perf_counter() - started
                frame = Frame("bench", index, image, index / 25, time.time())
                with clock("serialise"):
                    orjson.dumps(detections_message(frame, shown, detector.model_id, time.time()))
        finally:
            started = time.perf_counter()
            writer.close()
            encoding += time.perf_counter() - started
    clock.times["decode"] = decode_times[1:]  # the first frame pays for opening the decoder
    stages = {stage: median_ms(values) for stage, values in clock.times.items() if stage != "encode"}
    stages["encode"] = encoding / len(images) * 1000
    return {stage: stages[stage] for stage in STAGES}, float(np.mean(found))
