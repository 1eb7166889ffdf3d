"""Asking Debian's ffprobe what a media file holds."""

from __future__ import annotations

import json
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

FFPROBE = shutil.which("ffprobe")
needs_ffprobe = pytest.mark.skipif(FFPROBE is None, reason="ffprobe (Debian's ffmpeg) is not installed")


def probe(path: Path) -> dict[str, Any]:
    """Streams of ``path`` with exact frame counts (decodes the whole file)."""
    assert FFPROBE is not None
    result = subprocess.run(
        [FFPROBE, "-v", "error", "-count_frames", "-show_entries",
         "stream=codec_type,codec_name,width,height,r_frame_rate,avg_frame_rate,nb_read_frames,duration"
         ":format=duration", "-of", "json", str(path)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def video_stream(info: dict[str, Any]) -> dict[str, Any]:
    return next(s for s in info["streams"] if s["codec_type"] == "video")


def frame_count(path: Path) -> int:
    return int(video_stream(probe(path))["nb_read_frames"])


def frame_rate(stream: dict[str, Any]) -> Fraction:
    return Fraction(stream["r_frame_rate"])
