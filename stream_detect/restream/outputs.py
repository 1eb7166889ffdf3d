"""What an encoder's packets feed: the interface every output of a stream's encoder has."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from .h264 import EncodedPacket


class PacketOutput(Protocol):
    """Takes one stream's encoded packets, on the encoder's thread: it must return at once (an output
    that does network or disk work queues the packets for a thread of its own, bounded, drops counted).

    A stream's packets come in time lines: :meth:`begin` (a new encoder: its size and nominal rate,
    pts from 0 again), packets, :meth:`end`. A time line ends when the stream restarts its clock, changes
    size or ends; the next one begins with a keyframe.
    """

    name: str

    def begin(self, width: int, height: int, rate: float) -> None: ...

    def on_packets(self, frame_index: int, packets: Sequence[EncodedPacket]) -> None:
        """The packets the encoder gave for captured frame ``frame_index`` (often one, none while it
        fills, several at a flush)."""
        ...

    def end(self) -> None: ...

    def close(self) -> None:
        """Called once, after the last time line: stop threads, free what is held."""
        ...

    def describe(self) -> dict[str, Any]:
        """The output's state and counters for ``GET /streams``."""
        ...
