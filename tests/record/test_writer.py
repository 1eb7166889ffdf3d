"""The MP4 writer: frame-exact files, and fragments that survive SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from stream_detect.record.writer import VideoWriter

from ..ffprobe import frame_count, frame_rate, needs_ffprobe, probe, video_stream


@needs_ffprobe
def test_closed_file_has_every_frame_at_its_rate(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    with VideoWriter(path, 160, 120, Fraction(30000, 1001), fragmented=False) as writer:
        for i in range(45):
            assert writer.write(np.full((120, 160, 3), i * 5, np.uint8), i * 1001 / 30000)
        assert not writer.write(np.zeros((120, 160, 3), np.uint8), 0.0)  # time must advance
    stream = video_stream(probe(path))
    assert int(stream["nb_read_frames"]) == 45
    assert (stream["width"], stream["height"]) == (160, 120)
    assert frame_rate(stream) == Fraction(30000, 1001)


KILLED_WRITER = """
import sys, time
import numpy as np
from pathlib import Path
from stream_detect.record.writer import VideoWriter
writer = VideoWriter(Path(sys.argv[1]), 320, 240, 25)
for i in range(100000):
    writer.write(np.full((240, 320, 3), i % 255, np.uint8), i / 25)
    if i == 60:
        print("written", flush=True)
    time.sleep(0.01)
"""


@needs_ffprobe
@pytest.mark.timeout(60)
def test_fragmented_file_survives_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "killed.mp4"
    process = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "written"
        time.sleep(0.5)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(10)
    # 25 fps, a fragment per second: all but the open fragment is playable.
    assert frame_count(path) >= 50
