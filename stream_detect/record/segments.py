"""Segment files on disk: names, recovery of partial files, retention.

A stream's segments live in ``DIR/<stream>/``, named by the stream and the
wall-clock start time: ``<stream>_<YYYYmmdd-HHMMSS.mmm>.mp4`` with a JSON
Lines sidecar of the same stem. A segment being written carries the suffix
``.partial.mp4``; it is renamed when closed. A ``.partial.mp4`` found at start
was left by a crash: it is a playable fragmented MP4 up to its last fragment
and is renamed (recovered) like a closed one.
"""

from __future__ import annotations

import logging
import struct
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger(__name__)

PARTIAL = ".partial.mp4"


def segment_stem(stream_id: str, started_at: float) -> str:
    moment = datetime.fromtimestamp(started_at, tz=timezone.utc)
    return f"{stream_id}_{moment:%Y%m%d-%H%M%S}.{moment.microsecond // 1000:03d}"


def final_path(partial: Path) -> Path:
    return partial.with_name(partial.name.removesuffix(PARTIAL) + ".mp4")


def recover_partials(directory: Path) -> list[Path]:
    """Renames segments a crash left open; returns their new paths.

    A segment killed before its first fragment holds no frame (only the
    movie header): it is deleted, with its sidecar, rather than left as an
    unplayable file.
    """
    recovered = []
    for partial in sorted(directory.glob(f"*{PARTIAL}")):
        if not has_fragment(partial):
            partial.unlink()
            final_path(partial).with_suffix(".jsonl").unlink(missing_ok=True)
            log.warning("removed a segment left open by a previous run before its first frame: %s", partial.name)
            continue
        target = final_path(partial)
        partial.rename(target)
        recovered.append(target)
        log.warning("recovered segment left open by a previous run: %s", target.name)
    return recovered


def has_fragment(path: Path) -> bool:
    """True when a fragmented MP4 holds at least one movie fragment (``moof`` box)."""
    with open(path, "rb") as file:
        while True:
            header = file.read(8)
            if len(header) < 8:
                return False
            size, kind = struct.unpack(">I4s", header)
            if kind == b"moof":
                return True
            if size == 1:  # 64-bit size follows
                extended = file.read(8)
                if len(extended) < 8:
                    return False
                size = struct.unpack(">Q", extended)[0] - 8
            if size < 8:  # 0: to the end of the file; below 8: damaged
                return False
            file.seek(size - 8, 1)


@dataclass(frozen=True)
class Retention:
    """Limits on a stream's recordings; the oldest segments go first."""

    max_bytes: int | None = None
    max_age_s: float | None = None

    def apply(self, directory: Path, keep: Path | None = None, now: float | None = None) -> list[Path]:
        """Deletes closed segments (and sidecars) past the limits; returns those deleted.

        Args:
            directory: The stream's segment directory.
            keep: The open segment, never deleted.
            now: Current time (for tests).
        """
        now = time.time() if now is None else now
        segments = sorted(p for p in directory.glob("*.mp4") if p != keep and not p.name.endswith(PARTIAL))
        sizes = {p: _size(p) + _size(p.with_suffix(".jsonl")) for p in segments}
        total = sum(sizes.values()) + (_size(keep) if keep else 0)
        deleted = []
        for segment in segments:  # oldest first: names sort by start time
            too_old = self.max_age_s is not None and now - segment.stat().st_mtime > self.max_age_s
            too_big = self.max_bytes is not None and total > self.max_bytes
            if not (too_old or too_big):
                break
            segment.unlink(missing_ok=True)
            segment.with_suffix(".jsonl").unlink(missing_ok=True)
            total -= sizes[segment]
            deleted.append(segment)
        if deleted:
            log.info("retention: deleted %d old segment(s) in %s", len(deleted), directory.name)
        return deleted


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
