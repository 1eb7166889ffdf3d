"""``stream-detect annotate INPUT --output OUT.mp4``: every frame of a file, annotated.

The composition root's pipeline with one file source and file sinks: the
file is read as fast as the detector takes it (a blocking queue, taken in
order), batched and filtered like any stream, and every result goes to the
annotated video and, with ``--jsonl``, to JSON Lines in the websocket's
detections shape. The sinks block instead of dropping, so no frame is lost:
the output keeps the input's frame count, size, frame rate and timestamps,
and its first audio stream is copied as it is.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from ..compose import build_pipeline
from ..config import Config, FileSource, ModelConfig
from ..detect import load_detector
from ..detect.base import Detector
from ..detect.device import resolve_device
from ..errors import SourceError, SourceOpenError
from ..record.annotated import AnnotatedVideoSink, JsonLinesSink
from ..records import Detections
from ..sinks import FrameResult, Overflow
from ..sources.base import SourceState
from ..sources.capture import StateChange

STREAM_ID = "annotate"
SINK_BUFFER = 8


@dataclass(frozen=True)
class VideoCodecs:
    """Which video codecs ``annotate`` uses: ``auto`` (NVDEC/NVENC on CUDA devices when present),
    ``software`` (FFmpeg's decoder, libx264) or ``nvidia`` (insist on NVDEC/NVENC)."""

    decoder: str = "auto"
    encoder: str = "auto"


@dataclass(frozen=True)
class _Input:
    width: int
    height: int
    rate: Fraction
    frames: int | None
    audio: bool
    codec: str


def _probe(path: str) -> _Input:
    try:
        container = av.open(path)
    except (av.FFmpegError, OSError) as error:
        raise SourceOpenError(f"cannot open {path!r}: {getattr(error, 'strerror', None) or error}") from None
    try:
        if not container.streams.video:
            raise SourceOpenError(f"{path!r} has no video stream")
        video = container.streams.video[0]
        rate = Fraction(video.average_rate or video.guessed_rate or 25)
        duration_s = float(video.duration * video.time_base) if video.duration and video.time_base else None
        total = video.frames or (round(duration_s * rate) if duration_s else None)
        context = video.codec_context
        return _Input(context.width, context.height, rate, total or None, bool(container.streams.audio),
                      context.name)
    finally:
        container.close()


class _Borrowed:
    """An already loaded detector lent to the pipeline, which must not close it (``bench``)."""

    def __init__(self, detector: Detector) -> None:
        self._detector = detector
        self.model_id = detector.model_id

    def detect(self, images: Sequence[np.ndarray], threshold: float) -> list[Detections]:
        return self._detector.detect(images, threshold)

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        return self._detector.input_size(height, width)

    def close(self) -> None:
        pass


class _Progress:
    """Counts the results and waits for the stream's end (its status comes after its last result)."""

    name = "progress"

    def __init__(self, bar: Any, task: Any) -> None:
        self._bar = bar
        self._task = task
        self.frames = 0
        self.end: StateChange | None = None
        self.ended = threading.Event()

    def on_result(self, result: FrameResult) -> None:
        self.frames += 1
        if self._bar is not None:
            self._bar.update(self._task, completed=self.frames)

    def on_status(self, change: StateChange) -> None:
        if change.state in (SourceState.ENDED, SourceState.FAILED, SourceState.STOPPED):
            self.end = change
            self.ended.set()

    def close(self) -> None:
        self.ended.set()


def _progress_bar(total: int | None) -> AbstractContextManager[Any]:
    if not sys.stderr.isatty():
        return nullcontext(None)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    class FpsColumn(TransferSpeedColumn):
        def render(self, task: Any) -> Any:
            from rich.text import Text

            return Text(f"{task.speed or 0:.1f} frames/s", style="progress.data.speed")

    return Progress(
        TextColumn("annotating"), BarColumn(), MofNCompleteColumn(), FpsColumn(), TimeRemainingColumn(),
        transient=False,
    )


def annotate(config: ModelConfig, input_path: str, output: str, jsonl_path: str | None,
             detector: Detector | None = None, codecs: VideoCodecs = VideoCodecs()) -> int:
    """Annotates every frame of ``input_path`` into ``output``; returns the exit code.

    ``detector``: an already loaded one (``bench``), left open; by default
    ``config``'s model is loaded and closed.
    """
    found = _probe(input_path)
    device = resolve_device(config.device)
    decoder = device.video_decoder(found.codec, codecs.decoder)
    source = FileSource(id=STREAM_ID, path=input_path, realtime=False, drop_policy="block",
                        queue_size=min(256, max(8, 2 * config.max_batch_size)), decoder=decoder)
    video = AnnotatedVideoSink(Path(output), input_path, found.width, found.height, found.rate,
                               device.video_encoder(codecs.encoder), found.audio, device.file_encoder_threads())
    sinks: list[Any] = [video]
    jsonl = JsonLinesSink(Path(jsonl_path)) if jsonl_path else None
    if jsonl is not None:
        sinks.append(jsonl)
    loader: Callable[[ModelConfig], Detector] = load_detector
    if detector is not None:
        lent = _Borrowed(detector)
        loader = lambda _model: lent  # noqa: E731
    with _progress_bar(found.frames) as bar:
        progress = _Progress(bar, bar.add_task("annotate", total=found.frames) if bar is not None else None)
        pipeline = build_pipeline(Config(model=config, sources=[source]), loader, [*sinks, progress],
                                  overflow=Overflow.BLOCK, buffer=SINK_BUFFER)
        pipeline.start()
        try:
            while not progress.ended.wait(0.5):  # in slices: Ctrl-C is seen at once
                pass
            stream = pipeline.streams[STREAM_ID]
            captured = stream.capture.stats.frames
        finally:
            pipeline.stop(timeout=30)
    end = progress.end
    if end is not None and end.state is SourceState.FAILED:
        raise SourceError(end.detail or f"cannot read {input_path!r}")
    if end is not None and end.detail:
        raise SourceError(f"decoding stopped after {captured} frames: {end.detail}")
    error = pipeline.workers["default"].error
    if error:
        raise SourceError(error)
    if progress.frames < captured:
        raise SourceError(f"{captured - progress.frames} of {captured} frames could not be annotated (see the log)")
    print(f"stream-detect: annotated {video.frames} frames into {output}", file=sys.stderr)
    return 0
