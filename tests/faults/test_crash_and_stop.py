"""A real recording process killed at random times, and stopped with SIGTERM."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest
import yaml

from ..ffprobe import needs_ffprobe, probe, video_stream
from ..processes import serving_command
from .helpers import Listener, children, wait_until

FPS = 15
SEGMENT_S = 2
TRIALS = 5


def write_config(tmp_path: Path) -> Path:
    config = {
        "model": {"id": "fake"},
        "server": {"port": 0},
        "sources": [{"kind": "synthetic", "id": "cam", "fps": FPS, "width": 320, "height": 240}],
        "record": {"dir": str(tmp_path / "rec"), "segment_seconds": SEGMENT_S},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def segment_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "rec" / "cam").glob("*.mp4"))


def partials(tmp_path: Path) -> list[Path]:
    return [p for p in segment_files(tmp_path) if p.name.endswith(".partial.mp4")]


def frames_and_duration(path: Path) -> tuple[int, float]:
    stream = video_stream(probe(path))
    return int(stream["nb_read_frames"]), float(stream.get("duration") or 0)


@needs_ffprobe
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_sigkill_at_random_times_keeps_every_segment_playable(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    rng = random.Random(os.environ.get("FAULT_SEED", "6"))
    left_open: list[Path] = []
    recovered = 0
    for trial in range(TRIALS + 1):  # the last start only recovers what the last kill left
        with serving_command("run", "--config", str(config), module="tests.faults.fake_run",
                             stop=signal.SIGKILL if trial < TRIALS else signal.SIGTERM) as served:
            # What the previous kill left open is recognised and renamed at start.
            assert wait_until(lambda files=tuple(left_open): not any(p.exists() for p in files), 10), left_open
            recovered += len(left_open)
            if trial == TRIALS:
                break
            assert wait_until(lambda: bool(partials(tmp_path)), 20), "no segment opened"
            time.sleep(rng.uniform(0.5, 2.5 * SEGMENT_S))
            left_open = partials(tmp_path)
        assert served.process.returncode == -signal.SIGKILL
    assert "left open by a previous run" in served.stderr
    files = segment_files(tmp_path)
    assert not partials(tmp_path) and recovered == TRIALS
    report = []
    for path in files:
        frames, duration = frames_and_duration(path)  # ffprobe decodes every frame, or the test fails
        expected = round(duration * FPS)
        report.append((frames, round(duration, 2)))
        assert frames >= 0.95 * expected, (path.name, frames, duration)
    closed = [r for r in report if r[1] >= SEGMENT_S - 0.2]
    print(f"{len(files)} segments (frames, seconds): {report}")
    assert len(closed) >= 3, "no complete segments"
    assert all(frames >= 0.95 * FPS * SEGMENT_S for frames, _ in closed)


@needs_ffprobe
@pytest.mark.timeout(90)
def test_sigterm_exits_in_time_with_segments_finalised_and_clients_told_1001(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with serving_command("run", "--config", str(config), module="tests.faults.fake_run") as served:
        pid = served.process.pid
        with Listener(served.base) as client:
            assert wait_until(lambda: len(client.detections("cam")) >= 30, 20)
            kids = children(pid)
            started = time.monotonic()
            served.process.send_signal(signal.SIGTERM)
            served.process.wait(15)
            took = time.monotonic() - started
            assert client.wait_closed(5)
            code = client.close_code
    print(f"exited {took:.2f} s after SIGTERM with code {served.process.returncode}; websocket close code {code}")
    # uvicorn re-raises the signal after its graceful shutdown, as a service manager expects.
    assert served.process.returncode in (0, -signal.SIGTERM) and took <= 10
    assert "did not stop" not in served.stderr and "Traceback" not in served.stderr
    assert code == 1001
    assert not partials(tmp_path)
    files = segment_files(tmp_path)
    assert files and all(frames_and_duration(p)[0] > 0 for p in files)
    assert all(not Path(f"/proc/{child}").exists() for child, _ in kids)
