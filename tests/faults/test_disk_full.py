"""The recording disk fills up: the recorder says so, everything else runs on,
and recording resumes in a new segment once there is room again.

A real full file system: a 1 MB tmpfs, mounted for the test (needs root, or
the test skips with the reason).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import Listener, analyzer, streams, wait_until

SIZE = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(mount_point)],
                            capture_output=True, text=True, timeout=30, check=False)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs (needs root): {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, timeout=30, check=False)


@pytest.mark.timeout(90)
def test_disk_full_is_reported_and_recording_resumes(small_disk: Path) -> None:
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (SIZE - 160 * 1024))  # room for a couple of seconds of video
    record = {"dir": str(small_disk / "rec"), "segment_seconds": 2, "retry_s": 1}
    source = {"kind": "synthetic", "id": "cam", "fps": 15, "width": 320, "height": 240}
    with analyzer([source], record=record) as base, Listener(base) as ws:
        assert wait_until(lambda: (streams(base)["cam"]["recording"] or {}).get("state") == "failed", 40), \
            streams(base)["cam"]["recording"]
        failed_at = time.monotonic()
        recording = streams(base)["cam"]["recording"]
        states = set()
        for _ in range(20):  # 2 s: retries keep failing, and say so
            states.add(streams(base)["cam"]["recording"]["state"])
            time.sleep(0.1)
        described = streams(base)["cam"]
        during = len(ws.detections("cam", after=failed_at))
        before = set((small_disk / "rec" / "cam").glob("*.mp4"))
        filler.unlink()
        freed_at = time.monotonic()
        assert wait_until(lambda: streams(base)["cam"]["recording"]["state"] == "recording", 10)
        resumed_after = time.monotonic() - freed_at
        assert wait_until(lambda: set((small_disk / "rec" / "cam").glob("*.mp4")) - before, 10)
        written = streams(base)["cam"]["recording"]["frames_written"]
        assert wait_until(lambda: streams(base)["cam"]["recording"]["frames_written"] >= written + 10, 10)
    print(f"recorder: {recording['error']}; {during} detections in the 2 s after; resumed {resumed_after:.1f} s "
          f"after space was freed")
    assert "no space left" in recording["error"].lower()
    assert states == {"failed"}, states
    assert described["recording"]["failures"] >= 2, "no retry while the disk was full"
    assert described["state"] == "running"
    assert during >= 15, "detection or the websocket stalled while the disk was full"
    assert resumed_after <= 1 + 5
