"""Capture threads against real files, lavfi and scripted sources."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from stream_detect.config import Config, SourceConfig, parse_config
from stream_detect.errors import SourceError, SourceOpenError
from stream_detect.frame_queue import DropPolicy, FrameQueue, QueueClosed
from stream_detect.records import Frame
from stream_detect.sources import build_source
from stream_detect.sources.base import RawFrame, SourceState
from stream_detect.sources.capture import Capture, StateChange

from ..media import write_h264


def source_config(data: dict) -> SourceConfig:
    config: Config = parse_config({"sources": [data]})
    return config.sources[0]


class Recorder:
    """Collects state changes."""

    def __init__(self) -> None:
        self.changes: list[StateChange] = []
        self.lock = threading.Lock()

    def __call__(self, change: StateChange) -> None:
        with self.lock:
            self.changes.append(change)

    def states(self) -> list[SourceState]:
        with self.lock:
            return [c.state for c in self.changes]

    def wait_for(self, state: SourceState, timeout: float, count: int = 1) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.states().count(state) >= count:
                return True
            time.sleep(0.02)
        return False


def drain(queue: FrameQueue[Frame], *, delay_s: float = 0.0, timeout_s: float = 30.0) -> list[Frame]:
    frames: list[Frame] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            frame = queue.get_nowait()
        except QueueClosed:
            break
        if frame is None:
            time.sleep(0.002)
            continue
        frames.append(frame)
        if delay_s:
            time.sleep(delay_s)
    return frames


def start_capture(
    config: SourceConfig, maxsize: int, policy: DropPolicy
) -> tuple[Capture, FrameQueue[Frame], Recorder]:
    queue: FrameQueue[Frame] = FrameQueue(maxsize, policy)
    states = Recorder()
    capture = Capture(build_source(config), config, queue, states)
    capture.start()
    return capture, queue, states


@pytest.mark.timeout(60)
def test_file_mode_loses_no_frame_with_a_slow_consumer(tmp_path: Path) -> None:
    video = write_h264(tmp_path / "clip.mp4", frames=60)
    capture, queue, states = start_capture(source_config({"kind": "file", "id": "f", "path": str(video)}), 2,
                                           DropPolicy.BLOCK)
    frames = drain(queue, delay_s=0.005)
    assert capture.join(5)
    assert [f.index for f in frames] == list(range(60))
    assert frames[0].pts == pytest.approx(0.0) and frames[-1].pts == pytest.approx(59 / 25)
    assert queue.dropped == 0
    assert states.states() == [SourceState.CONNECTING, SourceState.RUNNING, SourceState.ENDED]
    assert capture.thread_name == "capture:f"


@pytest.mark.timeout(60)
def test_a_looping_file_starts_again_at_once_without_a_reconnect(tmp_path: Path) -> None:
    video = write_h264(tmp_path / "clip.mp4", frames=20, rate=25)  # 0.8 s
    config = source_config({"kind": "file", "id": "loop", "path": str(video), "realtime": True, "loop": True})
    capture, queue, states = start_capture(config, 200, DropPolicy.DROP_OLDEST)
    try:
        deadline = time.monotonic() + 20
        while capture.stats.frames < 50 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        capture.stop()
        assert capture.join(3)
    frames = drain_now(queue)
    assert len(frames) >= 50, len(frames)
    assert [f.index for f in frames] == list(range(len(frames)))
    assert [f.pts for f in frames[:41:20]] == pytest.approx([0.0, 0.0, 0.0])  # played from the start, twice
    assert SourceState.RECONNECTING not in states.states() and capture.stats.reconnects == 0
    # Paced like a camera across the loop: the first backoff wait (0.5 s) is not spent there.
    wraps = [b.captured_at - a.captured_at for a, b in itertools.pairwise(frames) if b.pts < a.pts]
    assert len(wraps) >= 2 and max(wraps) < 0.45, wraps


@pytest.mark.timeout(60)
def test_a_looping_file_shorter_than_the_first_wait_does_not_spin(tmp_path: Path) -> None:
    video = write_h264(tmp_path / "one.mp4", frames=1, rate=25)
    config = source_config({"kind": "file", "id": "one", "path": str(video), "realtime": True, "loop": True})
    capture, queue, _ = start_capture(config, 200, DropPolicy.DROP_OLDEST)
    try:
        time.sleep(1.5)
    finally:
        capture.stop()
        assert capture.join(3)
    assert 2 <= len(drain_now(queue)) <= 6  # one frame per 0.5 s wait, not as fast as the file opens


@pytest.mark.timeout(60)
def test_live_source_keeps_the_freshest_frames_and_counts_drops() -> None:
    config = source_config({"kind": "lavfi", "id": "t", "graph": "testsrc2=size=160x120:rate=50"})
    capture, queue, _ = start_capture(config, 2, DropPolicy.DROP_OLDEST)
    try:
        time.sleep(1.0)
        ages = []
        for _ in range(10):
            frames = []
            while (frame := queue.get_nowait()) is not None:
                frames.append(frame)
            if frames:
                ages.append(time.time() - frames[-1].captured_at)
            time.sleep(0.2)
    finally:
        capture.stop()
        assert capture.join(3)
    assert queue.dropped > 20
    assert max(ages) < 0.2


class FlakySource:
    """Fails to open ``failures`` times, then yields ``frames`` frames and ends, forever."""

    live = True
    stream_id = "flaky"

    def __init__(self, failures: int, frames: int) -> None:
        self.failures = failures
        self.frames = frames
        self.opened_at: list[float] = []

    def open(self) -> FlakyReader:
        self.opened_at.append(time.monotonic())
        if len(self.opened_at) <= self.failures:
            raise SourceOpenError("cannot open rtsp://***@camera: Connection refused")
        return FlakyReader(self.frames)


class FlakyReader:
    fps = 25.0

    def __init__(self, frames: int) -> None:
        self.frames = frames

    def __iter__(self) -> Iterator[RawFrame]:
        for i in range(self.frames):
            yield RawFrame(np.zeros((8, 8, 3), np.uint8), i / 25)

    def close(self) -> None:
        pass


@pytest.mark.timeout(60)
def test_reconnects_with_capped_exponential_backoff() -> None:
    config = source_config({"kind": "url", "id": "flaky", "url": "rtsp://camera/x",
                            "reconnect": {"initial_s": 0.1, "max_s": 0.4}})
    source = FlakySource(failures=5, frames=3)
    queue: FrameQueue[Frame] = FrameQueue(100, DropPolicy.DROP_OLDEST)
    states = Recorder()
    capture = Capture(source, config, queue, states)
    capture.start()
    try:
        assert states.wait_for(SourceState.RUNNING, 10, count=2)
    finally:
        capture.stop()
        assert capture.join(3)
    gaps = np.diff(source.opened_at[:6])
    assert gaps[0] >= 0.09 and gaps[1] >= 0.18 and gaps[2] >= 0.36
    assert all(gap < 0.4 * 1.5 for gap in gaps[2:5]), gaps  # capped at max_s
    assert states.states()[:3] == [SourceState.CONNECTING, SourceState.RECONNECTING, SourceState.RUNNING]
    assert capture.stats.reconnects >= 1
    indices = [f.index for f in drain_now(queue)]
    assert indices == sorted(set(indices)), "frame numbers keep increasing across reconnects"
    assert states.states()[-1] is SourceState.STOPPED


def drain_now(queue: FrameQueue[Frame]) -> list[Frame]:
    frames = []
    while True:
        try:
            frame = queue.get_nowait()
        except QueueClosed:
            return frames
        if frame is None:
            return frames
        frames.append(frame)


@pytest.mark.timeout(30)
def test_stop_is_prompt_while_waiting_to_reconnect() -> None:
    config = source_config({"kind": "url", "id": "down", "url": "rtsp://user:hunter22@127.0.0.1:9/x",
                            "open_timeout_s": 1, "reconnect": {"initial_s": 30, "max_s": 60}})
    capture, _, states = start_capture(config, 2, DropPolicy.DROP_OLDEST)
    assert states.wait_for(SourceState.RECONNECTING, 10)
    started = time.monotonic()
    capture.stop()
    assert capture.join(2)
    assert time.monotonic() - started < 1.5
    details = " ".join(c.detail or "" for c in states.changes)
    assert "hunter22" not in details and "127.0.0.1" in details


@pytest.mark.timeout(30)
def test_stop_is_prompt_on_a_full_blocking_queue(tmp_path: Path) -> None:
    video = write_h264(tmp_path / "clip.mp4", frames=40)
    capture, _, _ = start_capture(source_config({"kind": "file", "id": "f", "path": str(video)}), 1,
                                  DropPolicy.BLOCK)
    time.sleep(0.5)  # the queue is full and nobody reads
    started = time.monotonic()
    capture.stop()
    assert capture.join(2)
    assert time.monotonic() - started < 1.0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("content", [b"", b"garbage" * 100, None])
def test_broken_files_end_in_a_clear_state(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "broken.mp4"
    if content is None:
        good = write_h264(tmp_path / "good.mp4", frames=30).read_bytes()
        path.write_bytes(good[: len(good) // 3])  # truncated
    else:
        path.write_bytes(content)
    capture, queue, states = start_capture(source_config({"kind": "file", "id": "b", "path": str(path)}), 4,
                                           DropPolicy.BLOCK)
    drain(queue, timeout_s=5)
    assert capture.join(5)
    final = states.changes[-1]
    assert final.state in (SourceState.FAILED, SourceState.ENDED)
    if final.state is SourceState.FAILED:
        assert final.detail and "broken.mp4" in final.detail


def test_av_source_errors_are_source_errors(tmp_path: Path) -> None:
    source = build_source(source_config({"kind": "file", "id": "m", "path": str(tmp_path / "missing.mp4")}))
    with pytest.raises(SourceError, match=r"missing\.mp4"):
        source.open()
