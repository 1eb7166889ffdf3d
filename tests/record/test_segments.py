"""Segment names, recovery of partial files and retention."""

from __future__ import annotations

import os
from pathlib import Path

from stream_detect.record.segments import PARTIAL, Retention, recover_partials, segment_stem


def make_segment(directory: Path, stem: str, size: int, mtime: float) -> Path:
    video = directory / f"{stem}.mp4"
    video.write_bytes(b"\0" * size)
    (directory / f"{stem}.jsonl").write_bytes(b"{}\n")
    os.utime(video, (mtime, mtime))
    return video


def test_stems_sort_by_start_time() -> None:
    stems = [segment_stem("cam", t) for t in (1_700_000_000.5, 1_700_000_060.25, 1_700_003_600.0)]
    assert stems == sorted(stems)
    assert stems[0] == "cam_20231114-221320.500"


def test_retention_deletes_oldest_first_by_size(tmp_path: Path) -> None:
    now = 1_800_000_000.0
    segments = [make_segment(tmp_path, segment_stem("cam", now - 300 + 60 * i), 1000, now) for i in range(5)]
    deleted = Retention(max_bytes=3100).apply(tmp_path, now=now)
    assert deleted == segments[:2]
    assert sorted(tmp_path.glob("*.mp4")) == segments[2:]
    assert not (tmp_path / f"{segments[0].stem}.jsonl").exists()


def test_retention_deletes_by_age_and_spares_the_open_segment(tmp_path: Path) -> None:
    now = 1_800_000_000.0
    old = make_segment(tmp_path, segment_stem("cam", now - 7200), 10, now - 7200)
    fresh = make_segment(tmp_path, segment_stem("cam", now - 60), 10, now - 60)
    open_one = tmp_path / f"{segment_stem('cam', now)}{PARTIAL}"
    open_one.write_bytes(b"\0" * 10)
    assert Retention(max_age_s=3600, max_bytes=1).apply(tmp_path, keep=open_one, now=now) == [old, fresh]
    assert open_one.exists()


def test_partial_files_are_recovered(tmp_path: Path) -> None:
    partial = tmp_path / f"{segment_stem('cam', 1_700_000_000)}{PARTIAL}"
    data = b"\x00\x00\x00\x10ftypisom\x00\x00\x00\x00" + b"\x00\x00\x00\x10moof" + b"\x00" * 8
    partial.write_bytes(data)
    # Killed before its first fragment: only a header, nothing to play.
    empty = tmp_path / f"{segment_stem('cam', 1_700_000_100)}{PARTIAL}"
    empty.write_bytes(b"\x00\x00\x00\x10ftypisom\x00\x00\x00\x00")
    empty_sidecar = tmp_path / f"{segment_stem('cam', 1_700_000_100)}.jsonl"
    empty_sidecar.write_bytes(b"")
    recovered = recover_partials(tmp_path)
    assert [p.name for p in recovered] == ["cam_20231114-221320.000.mp4"]
    assert recovered[0].read_bytes() == data and not partial.exists()
    assert not empty.exists() and not empty.with_name(empty.name.replace(PARTIAL, ".mp4")).exists()
    assert not empty_sidecar.exists()
