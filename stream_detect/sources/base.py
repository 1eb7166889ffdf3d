"""What every source implements: open a connection, iterate frames, close."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np


class SourceState(enum.Enum):
    """Life cycle of a stream, published as status messages and metrics."""

    CONNECTING = "connecting"
    RUNNING = "running"
    RECONNECTING = "reconnecting"
    ENDED = "ended"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class RawFrame:
    """A decoded frame before it is numbered and stamped.

    Attributes:
        image: ``(H, W, 3) uint8`` RGB, C-contiguous.
        pts: Presentation time in seconds on the source's timeline, or None.
        corrupt: The decoder flagged damage.
        skipped: Packets the decoder rejected since the previous frame (lost,
            counted as corrupt frames).
    """

    image: np.ndarray
    pts: float | None
    corrupt: bool = False
    skipped: int = 0


class Reader(Protocol):
    """One open connection to a source.

    Iterating yields frames until the end of the file or a disconnect (the
    iterator simply ends) and raises :class:`~stream_detect.errors.SourceError`
    on a read failure or a read timeout. ``close`` is idempotent and may be
    called from another thread to interrupt a blocked read.
    """

    fps: float | None

    def __iter__(self) -> Iterator[RawFrame]: ...

    def close(self) -> None: ...


class Source(Protocol):
    """A configured source that can be opened (again after a disconnect)."""

    stream_id: str
    live: bool

    def open(self) -> Reader:
        """Opens a connection; raises SourceOpenError (credentials redacted)."""
        ...
