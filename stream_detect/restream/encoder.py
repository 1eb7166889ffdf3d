"""A stream's one encoder: its captured frames drawn with the latest overlay, encoded once, fanned out.

:class:`StreamEncoder` owns a thread (``encode:<stream-id>``) that takes the
stream's captured frames from a small drop-oldest queue (a slow encoder
loses frames, counted; capture and detection never wait on it), draws each
with the stream's latest overlay, encodes it once (:mod:`.h264`) and gives
the packets to every output (:mod:`.outputs`): an RTSP push, the HLS
segmenter, recording, clips. An output that fails is logged once and
counted; the others go on.

Time line: frames are encoded at their stream time ``t`` (pts, or capture
time). A ``t`` that goes back by :data:`RESTART_S` or more, jumps ahead by
more than :data:`MAX_GAP_S`, or a frame of another size ends the time line
(the encoder is flushed, the outputs told) and a new encoder starts with it.
A frame whose ``t`` does not advance (a smaller step back, a repeated pts) is
skipped, counted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..frame_queue import DropPolicy, FrameQueue, QueueClosed
from ..overlay import Overlay, frame_time
from ..records import Frame
from .h264 import CodecSettings, EncodedPacket, H264Encoder
from .outputs import PacketOutput

log = logging.getLogger(__name__)

RESTART_S = 1.0
MAX_GAP_S = 5.0
DEFAULT_RATE = 25.0


@dataclass(slots=True)
class EncoderCounters:
    """What a stream's encoder did (written by its thread, read by anyone)."""

    frames_encoded: int = 0
    frames_skipped: int = 0
    encode_s: float = 0.0
    encoder_failures: int = 0
    output_failures: int = 0
    time_lines: int = 0


class StreamEncoder:
    """Encodes one stream's annotated frames once for all its outputs.

    Args:
        stream_id: The stream.
        overlay_of: The stream's latest overlay (read on the encoder thread for every frame).
        outputs: Where the packets go.
        rate: The stream's nominal frame rate, or None (:data:`DEFAULT_RATE`): sets the GOP.
        codec: Codec settings.
        queue_size: Captured frames waiting for the encoder; more drop the oldest (counted).
    """

    def __init__(self, stream_id: str, overlay_of: Callable[[], Overlay], outputs: Sequence[PacketOutput],
                 rate: float | None = None, codec: CodecSettings | None = None, queue_size: int = 8) -> None:
        self.stream_id = stream_id
        self.outputs: tuple[PacketOutput, ...] = tuple(outputs)
        self.rate = rate or DEFAULT_RATE
        self.codec = codec or CodecSettings()
        self.counters = EncoderCounters()
        self._overlay_of = overlay_of
        self._frames: FrameQueue[Frame] = FrameQueue(queue_size, DropPolicy.DROP_OLDEST)
        self._encoder: H264Encoder | None = None
        self._last_failure: str | None = None
        self._failed_outputs: set[str] = set()
        self._size: tuple[int, int] | None = None
        self._last_index = -1  # the newest frame encoded: the flush's packets are told as its
        self._thread = threading.Thread(target=self._run, name=f"encode:{stream_id}")

    # -- any thread ------------------------------------------------------------

    def add_output(self, output: PacketOutput) -> None:
        """Adds an output; before :meth:`start` only."""
        if self._thread.ident is not None:
            raise RuntimeError(f"stream {self.stream_id}: outputs are added before the encoder starts")
        self.outputs = (*self.outputs, output)

    def start(self) -> None:
        self._thread.start()

    def put(self, frame: Frame) -> None:
        """Queues a captured frame; never waits (a full queue drops its oldest, counted)."""
        self._frames.put(frame)

    def stop(self) -> None:
        """Encodes what is queued, flushes, closes the outputs and ends the thread."""
        self._frames.close()

    def join(self, timeout: float) -> bool:
        if self._thread.ident is None:
            self._close_outputs()
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def frames_dropped(self) -> int:
        return self._frames.dropped

    def describe(self) -> dict[str, Any]:
        """The encoder and its outputs, for ``GET /streams``."""
        counters = self.counters
        size = self._size
        return {
            "codec": self.codec.codec,
            "width": size[0] if size else None,
            "height": size[1] if size else None,
            "frames_encoded": counters.frames_encoded,
            "frames_dropped": self.frames_dropped,
            "frames_skipped": counters.frames_skipped,
            "encode_ms_mean": round(1000 * counters.encode_s / counters.frames_encoded, 3)
            if counters.frames_encoded else None,
            "encoder_failures": counters.encoder_failures,
            "output_failures": counters.output_failures,
            "time_lines": counters.time_lines,
            "outputs": {output.name: output.describe() for output in self.outputs},
        }

    # -- the thread --------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                try:
                    frame = self._frames.get_nowait()
                except QueueClosed:
                    break
                if frame is not None:
                    self._encode(frame)
                    continue
                with self._frames.wakeup:
                    if not len(self._frames) and not self._frames.closed:
                        self._frames.wakeup.wait(0.5)
        finally:
            self._end_time_line()
            self._close_outputs()

    def _encode(self, frame: Frame) -> None:
        t = frame_time(frame)
        encoder = self._encoder
        if encoder is not None and encoder.last_t is not None:
            step = t - encoder.last_t
            resized = (frame.height, frame.width) != (encoder.source_height, encoder.source_width)
            if resized or step <= -RESTART_S or step > MAX_GAP_S:
                self._end_time_line()
            elif step <= 0:
                self.counters.frames_skipped += 1
                return
        started = time.perf_counter()
        try:
            if self._encoder is None:
                self._encoder = self._begin(frame)
            packets = self._encoder.encode(self._overlay_of().draw(frame), t)
        except Exception as error:  # a broken encoder loses frames, never the stream
            self.counters.encoder_failures += 1
            message = f"{type(error).__name__}: {error}"
            if message != self._last_failure:  # once, not once per frame
                self._last_failure = message
                log.error("stream %s: encoder failed: %s", self.stream_id, message)
            self._end_time_line()
            return
        self._last_failure = None
        self.counters.encode_s += time.perf_counter() - started
        self.counters.frames_encoded += 1
        self._last_index = frame.index
        self._deliver(frame.index, packets)

    def _begin(self, frame: Frame) -> H264Encoder:
        encoder = H264Encoder(frame.width, frame.height, self.rate, self.codec)
        self._size = (encoder.width, encoder.height)
        self.counters.time_lines += 1
        for output in self.outputs:
            self._call(output, "begin", encoder.width, encoder.height, self.rate)
        return encoder

    def _deliver(self, frame_index: int, packets: list[EncodedPacket]) -> None:
        if not packets:
            return
        for output in self.outputs:
            self._call(output, "on_packets", frame_index, packets)

    def _end_time_line(self) -> None:
        encoder, self._encoder = self._encoder, None
        if encoder is None:
            return
        try:
            self._deliver(self._last_index, encoder.flush())
        except Exception as error:
            self.counters.encoder_failures += 1
            log.error("stream %s: flushing the encoder failed: %s", self.stream_id, error)
        for output in self.outputs:
            self._call(output, "end")

    def _call(self, output: PacketOutput, method: str, *args: Any) -> None:
        try:
            getattr(output, method)(*args)
        except Exception as error:  # one output's failure is its own
            self.counters.output_failures += 1
            if output.name not in self._failed_outputs:
                self._failed_outputs.add(output.name)
                log.error("stream %s: output %s failed: %s: %s", self.stream_id, output.name,
                          type(error).__name__, error)
        else:
            self._failed_outputs.discard(output.name)

    def _close_outputs(self) -> None:
        for output in self.outputs:
            try:
                output.close()
            except Exception as error:
                log.error("stream %s: closing output %s failed: %s", self.stream_id, output.name, error)
