"""Recording a live stream's annotated video, one thread per stream.

The stream's one encoder (:mod:`stream_detect.restream.encoder`: every
captured frame drawn with the latest detections, encoded once for
recording, clips, RTSP and HLS) hands the recorder each frame's packets
(:meth:`Recorder.output`); the recorder copies them, never re-encoding, into
segments of ``segment_seconds``, each starting at a keyframe. Writing runs on
the recorder's own thread behind a small drop-oldest queue: a slow disk loses
recording frames (counted; what follows a gap waits for the next keyframe),
it never stalls the encoder, capture or detection. Each segment has a JSON
Lines sidecar with every processed frame's detections message. A stop
flushes the encoder first, so the last segment is complete.

A failure (disk full, permissions) never reaches capture or detection: the
recorder reports it as its state (``failed`` with the error), lets frames pass
by, tries again every ``retry_s`` and resumes in a new segment.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..frame_queue import DropPolicy, FrameQueue, QueueClosed
from ..restream.feed import EncodedFrame, GapGuard, PacketFeed
from ..restream.h264 import EncodedPacket
from ..sinks import FrameResult
from .packet_writer import PacketWriter
from .segments import PARTIAL, Retention, final_path, recover_partials, segment_stem

log = logging.getLogger(__name__)


class RecorderState(enum.Enum):
    RECORDING = "recording"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True)
class RecorderSettings:
    directory: Path
    segment_seconds: float = 60.0
    retention: Retention = Retention()
    queue_size: int = 16
    retry_s: float = 10.0


class _Segment:
    """The open segment: packet writer, sidecar, and the time line they belong to."""

    def __init__(self, directory: Path, stream_id: str, encoded: EncodedFrame, first: EncodedPacket) -> None:
        stem = segment_stem(stream_id, time.time())
        self.partial = directory / f"{stem}{PARTIAL}"
        self.sidecar_path = directory / f"{stem}.jsonl"
        self.time_line = encoded.time_line
        self.origin_t = first.t
        self.video = PacketWriter(self.partial, encoded.width, encoded.height, encoded.rate)
        self.sidecar: IO[bytes] = open(self.sidecar_path, "ab")  # noqa: SIM115 - closed in close()

    def full(self, packet: EncodedPacket, segment_seconds: float) -> bool:
        """Whether ``packet`` starts the next segment: a keyframe once this one holds ``segment_seconds``."""
        return packet.keyframe and packet.t - self.origin_t >= segment_seconds - 1e-6

    def close(self, complete: bool = True) -> Path:
        """Closes the segment and gives it its final name; ``complete`` False (after a failure) writes
        nothing more into it."""
        try:
            self.video.close(write_last=complete)
        finally:
            self.sidecar.close()
        target = final_path(self.partial)
        self.partial.rename(target)
        return target


class Recorder:
    """Records one stream. Feed it with :meth:`output` (on the stream's encoder) and ``on_result``.

    Args:
        stream_id: The stream recorded.
        settings: Directory, segment length, retention, encoder.
    """

    def __init__(self, stream_id: str, settings: RecorderSettings) -> None:
        self.stream_id = stream_id
        self.settings = settings
        self.directory = settings.directory / stream_id
        self._frames: FrameQueue[EncodedFrame] = FrameQueue(settings.queue_size, DropPolicy.DROP_OLDEST)
        self._guard = GapGuard()
        self._time_line = 0
        self._records: list[bytes] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"record:{stream_id}")
        self._segment: _Segment | None = None
        self.state = RecorderState.RECORDING
        self._accepting = True  # frames are queued (false while waiting to retry)
        self.error: str | None = None
        self.failures = 0
        self.frames_written = 0
        self.segments_closed: list[Path] = []

    @property
    def frames_dropped(self) -> int:
        return self._frames.dropped

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        recover_partials(self.directory)
        self._thread.start()

    def stop(self) -> None:
        self._frames.close()

    def join(self, timeout: float) -> bool:
        if self._thread.ident is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- feeding (pipeline threads; quick) -------------------------------------

    def output(self) -> PacketFeed:
        """What the stream's encoder feeds: each frame's packets, queued for the recorder's thread."""
        return PacketFeed("recording", self._put, self.describe)

    def _put(self, encoded: EncodedFrame) -> None:
        if self._accepting:
            self._frames.put(encoded)

    def on_result(self, result: FrameResult) -> None:
        """The frame's detections: a line of the sidecar (the websocket's detections message)."""
        if not self._accepting:
            return
        line = result.json() + b"\n"
        with self._lock:
            self._records.append(line)

    # -- the thread ----------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                self._record()
                break
            except Exception as error:  # disk full, permissions: reported, never fatal to the pipeline
                self._fail(error)
                if not self._wait_to_retry():
                    break
                with contextlib.suppress(OSError):
                    recover_partials(self.directory)  # what the failed segment left behind
                with self._lock:
                    self._records = []
                self._accepting = True  # the state turns back to recording with the first frame written
        try:
            self._close_segment()
        except Exception as error:
            self._fail(error)
        self.state = RecorderState.STOPPED

    def _record(self) -> None:
        while True:
            frame = self._next_frame()
            if frame is None:
                return
            self._write(frame)

    def _fail(self, error: Exception) -> None:
        self._accepting = False
        self.state = RecorderState.FAILED
        self.failures += 1
        detail = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        repeated = self.error == f"recording {self.stream_id} failed: {detail}"
        self.error = f"recording {self.stream_id} failed: {detail}"
        if repeated:  # the same failure on a retry: said once already
            log.debug("%s (again)", self.error)
        elif isinstance(error, OSError):
            log.error("%s; retrying every %.0f s", self.error, self.settings.retry_s)
        else:
            log.exception("%s", self.error)
        self._abandon()

    def _wait_to_retry(self) -> bool:
        """Lets frames pass by for ``retry_s``; False if stopped meanwhile."""
        deadline = time.monotonic() + self.settings.retry_s
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                self._frames.get_nowait()
            except QueueClosed:
                return False
            with self._frames.wakeup:
                if not self._frames.closed:
                    self._frames.wakeup.wait(min(remaining, 0.5))
        return not self._frames.closed

    def _next_frame(self) -> EncodedFrame | None:
        while True:
            try:
                frame = self._frames.get_nowait()
            except QueueClosed:
                return None
            if frame is not None:
                return frame
            with self._frames.wakeup:
                if not len(self._frames) and not self._frames.closed:
                    self._frames.wakeup.wait(0.5)

    def _write(self, encoded: EncodedFrame) -> None:
        new_time_line = encoded.time_line != self._time_line
        if new_time_line:  # a restarted clock, another size: a new segment
            self._close_segment()
            self._time_line = encoded.time_line
        for packet in self._guard.usable(encoded, new_time_line):
            segment = self._segment
            if segment is not None and segment.full(packet, self.settings.segment_seconds):
                self._close_segment()
                segment = None
            if segment is None:
                if not packet.keyframe:  # after a failure: wait for a keyframe to start at
                    continue
                segment = self._segment = _Segment(self.directory, self.stream_id, encoded, packet)
            with self._lock:
                records, self._records = self._records, []
            if records:
                segment.sidecar.write(b"".join(records))
                segment.sidecar.flush()
            if segment.video.write(packet):
                self.frames_written += 1
                if self.state is RecorderState.FAILED:
                    self.state, self.error = RecorderState.RECORDING, None
                    log.info("recording %s resumed in %s", self.stream_id, segment.partial.name)

    def _close_segment(self) -> None:
        segment, self._segment = self._segment, None
        if segment is None:
            return
        closed = segment.close()
        self.segments_closed.append(closed)
        self.settings.retention.apply(self.directory)

    def _abandon(self) -> None:
        segment, self._segment = self._segment, None
        if segment is not None:
            try:
                segment.close(complete=False)
            except Exception:  # the file system already failed us; keep what is on disk
                log.warning("could not close segment %s cleanly", segment.partial.name)

    def describe(self) -> dict[str, object]:
        return {
            "state": self.state.value,
            "error": self.error,
            "failures": self.failures,
            "frames_written": self.frames_written,
            "frames_dropped": self.frames_dropped,
            "packets_skipped": self._guard.packets_skipped,
            "directory": str(self.directory),
        }

