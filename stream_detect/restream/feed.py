"""Handing an encoder's packets to an output that works on a thread of its own (recording, clips).

:class:`PacketFeed` is a :class:`~.outputs.PacketOutput` that turns the
encoder's calls into :class:`EncodedFrame` items, each self-describing (its
time line, size, rate and a sequence number), and gives them to a
``deliver`` callable: the owner's drop-oldest queue. An item may be dropped
on the way: the sequence number shows the gap, and :class:`GapGuard` tells
the consumer to skip what follows until the next keyframe (a GOP cut in the
middle does not decode).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .h264 import EncodedPacket


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """The packets the encoder gave for one captured frame.

    Attributes:
        index: The captured frame's index.
        packets: Its packets (none while the encoder fills; several at a flush).
        time_line: Which of the encoder's time lines (from 1): another number, a new encoder.
        width, height: The encoded size.
        rate: The stream's nominal frame rate.
        sequence: Counts items from 1: a gap is an item dropped on the way.
    """

    index: int
    packets: tuple[EncodedPacket, ...]
    time_line: int
    width: int
    height: int
    rate: float
    sequence: int


class PacketFeed:
    """An output that hands each frame's packets to ``deliver`` (which must not block).

    Args:
        name: The output's name in ``/streams``.
        deliver: Takes each :class:`EncodedFrame`.
        describe: The owner's state and counters for ``/streams``.
        close: Called once, after the last time line.
    """

    def __init__(self, name: str, deliver: Callable[[EncodedFrame], None],
                 describe: Callable[[], dict[str, Any]] = dict, close: Callable[[], None] = lambda: None) -> None:
        self.name = name
        self._deliver = deliver
        self._describe = describe
        self._close = close
        self._time_line = 0
        self._format = (0, 0, 0.0)
        self._sequence = 0

    def begin(self, width: int, height: int, rate: float) -> None:
        self._time_line += 1
        self._format = (width, height, rate)

    def on_packets(self, frame_index: int, packets: Sequence[EncodedPacket]) -> None:
        self._sequence += 1
        width, height, rate = self._format
        self._deliver(EncodedFrame(frame_index, tuple(packets), self._time_line, width, height, rate,
                                   self._sequence))

    def end(self) -> None:
        pass  # the next item's time line tells it

    def close(self) -> None:
        self._close()

    def describe(self) -> dict[str, Any]:
        return self._describe()


class GapGuard:
    """The consumer's side of a feed: which packets may be used after items were dropped on the way."""

    def __init__(self) -> None:
        self._sequence = 0
        self._waiting = False
        self.packets_skipped = 0

    def usable(self, item: EncodedFrame, new_time_line: bool) -> list[EncodedPacket]:
        """The packets of ``item`` that decode: after a gap (or at a new time line), from the next keyframe."""
        if item.sequence != self._sequence + 1 or new_time_line:
            self._waiting = True
        self._sequence = item.sequence
        packets = list(item.packets)
        if self._waiting:
            start = next((i for i, packet in enumerate(packets) if packet.keyframe), None)
            if start is None:
                self.packets_skipped += len(packets)
                return []
            self.packets_skipped += start
            self._waiting = False
            packets = packets[start:]
        return packets
