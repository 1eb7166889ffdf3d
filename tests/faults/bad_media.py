"""Broken and unusual media made with Debian's ffmpeg, each with what a user should see."""

from __future__ import annotations

import random
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="Debian's ffmpeg is not installed")

FRAMES = 50
RATE = 25


@dataclass(frozen=True)
class BadMedia:
    """A generated file and its expected outcome.

    Attributes:
        path: The file (may not exist: ``missing``).
        state: ``ended`` or ``failed``.
        frames: Exact frames expected, or None.
        min_frames: At least this many frames.
        corrupt: Corrupt frames must be counted.
        detail: A word the state's detail must contain (lower case), or None.
        size: (width, height) of the frames, or None.
    """

    path: Path
    state: str
    frames: int | None = None
    min_frames: int = 0
    corrupt: bool = False
    detail: str | None = None
    size: tuple[int, int] | None = None


def ffmpeg(*args: str) -> None:
    assert FFMPEG is not None
    result = subprocess.run([FFMPEG, "-y", "-loglevel", "error", *args], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr


def testsrc(size: str = "320x240", frames: int = FRAMES) -> list[str]:
    return ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={RATE}", "-frames:v", str(frames)]


X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-g", str(RATE)]


def damage(source: Path, target: Path, start: float, end: float, seed: int = 1, every: int = 97) -> Path:
    """Copies ``source`` to ``target`` with random bytes written over every ``every``-th byte
    between the fractions ``start`` and ``end`` of its length."""
    data = bytearray(source.read_bytes())
    rng = random.Random(seed)
    for i in range(int(len(data) * start), int(len(data) * end), every):
        data[i] = rng.randrange(256)
    target.write_bytes(bytes(data))
    return target


def make_bad_media(directory: Path) -> dict[str, BadMedia]:
    """Writes every file into ``directory``; returns them by name."""
    d = directory
    media: dict[str, BadMedia] = {}

    clean = d / "clean.mp4"
    ffmpeg(*testsrc(), *X264, "-movflags", "+faststart", str(clean))
    # Damage inside the media data only: the container parses, the decoder meets broken slices.
    media["corrupt_h264"] = BadMedia(damage(clean, d / "corrupt_h264.mp4", 0.45, 0.9), "ended",
                                     min_frames=10, corrupt=True)

    # A box on a dark background: something the fake detector finds at either size.
    for part, size in (("part1.ts", "320x240"), ("part2.ts", "640x360")):
        ffmpeg("-f", "lavfi", "-i", f"color=c=0x202020:size={size}:rate={RATE}", "-frames:v", "25",
               "-vf", "drawbox=x=iw/4:y=ih/4:w=iw/4:h=ih/4:color=yellow:t=fill", *X264, "-f", "mpegts",
               str(d / part))
    change = d / "resolution_change.ts"
    change.write_bytes((d / "part1.ts").read_bytes() + (d / "part2.ts").read_bytes())
    media["resolution_change"] = BadMedia(change, "ended", min_frames=45)

    truncated = d / "truncated.mp4"
    truncated.write_bytes(clean.read_bytes()[: clean.stat().st_size // 2])
    media["truncated"] = BadMedia(truncated, "ended", min_frames=5)

    moov_last = d / "moov_last.mp4"
    ffmpeg(*testsrc(), *X264, str(moov_last))
    no_index = d / "truncated_no_index.mp4"
    no_index.write_bytes(moov_last.read_bytes()[: moov_last.stat().st_size // 2])
    media["truncated_no_index"] = BadMedia(no_index, "failed", frames=0)

    empty = d / "empty.mp4"
    ffmpeg(*testsrc(frames=1), *X264, "-t", "0", str(empty))
    media["empty"] = BadMedia(empty, "failed", frames=0, detail="no video stream")

    garbage = d / "garbage.mp4"
    garbage.write_bytes(random.Random(7).randbytes(64 * 1024))
    media["garbage"] = BadMedia(garbage, "failed", frames=0, detail="cannot open")

    zero = d / "zero_byte.mp4"
    zero.write_bytes(b"")
    media["zero_byte"] = BadMedia(zero, "failed", frames=0, detail="cannot open")

    audio = d / "audio_only.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", str(audio))
    media["audio_only"] = BadMedia(audio, "failed", frames=0, detail="no video stream")

    ffmpeg(*testsrc(), "-vf", "scale=1:1", "-c:v", "ffv1", str(d / "one_pixel.mkv"))
    media["one_pixel"] = BadMedia(d / "one_pixel.mkv", "ended", frames=FRAMES, size=(1, 1))

    ffmpeg(*testsrc(), "-vf", "scale=4097:1", "-c:v", "ffv1", str(d / "wide_4097x1.mkv"))
    media["wide_4097x1"] = BadMedia(d / "wide_4097x1.mkv", "ended", frames=FRAMES, size=(4097, 1))

    ffmpeg(*testsrc(), *X264, "-pix_fmt", "yuv420p10le", str(d / "ten_bit.mp4"))
    media["ten_bit"] = BadMedia(d / "ten_bit.mp4", "ended", frames=FRAMES, size=(320, 240))

    ffmpeg(*testsrc(), "-c:v", "libx264", "-preset", "medium", "-bf", "3", "-g", str(RATE),
           str(d / "b_frames.mp4"))
    media["b_frames"] = BadMedia(d / "b_frames.mp4", "ended", frames=FRAMES, size=(320, 240))

    # 6 frames out of every 10 kept at their own timestamps: irregular gaps.
    ffmpeg(*testsrc(), "-vf", "select='lt(mod(n,10),6)'", "-fps_mode", "vfr", *X264, str(d / "variable_rate.mkv"))
    media["variable_rate"] = BadMedia(d / "variable_rate.mkv", "ended", frames=FRAMES, size=(320, 240))

    # An H.264 elementary stream whose every byte after the first kilobyte is noise.
    ffmpeg(*testsrc(), *X264, "-f", "h264", str(d / "clean.h264"))
    media["noise_h264"] = BadMedia(damage(d / "clean.h264", d / "noise.h264", 0.02, 1.0, every=1), "ended",
                                   corrupt=True)

    media["missing"] = BadMedia(d / "does-not-exist.mp4", "failed", frames=0, detail="cannot open")
    return media

