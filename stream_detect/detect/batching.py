"""The batching decision, as a pure function: lane heads and the time in, takes and a wait out.

The detector worker is a thin shell around :func:`plan`: it looks at its
lanes (how many items each holds, how each is taken from), asks what to take
and whether the batch is complete, takes it, and sleeps until the time it was
given or until something arrives. Threads, queues and clocks stay in the
shell; this module can be tested with tables.

How a lane is taken from is the lane's own declaration (:class:`Take`),
separate from how its queue fills: a live camera gives its freshest frame
once per batch (a second frame of the same camera would only wait a whole
forward pass behind the first), a file or the API gives its items in order.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass


class Take(enum.Enum):
    """How the worker takes from a lane."""

    FRESHEST = "freshest"
    """A live camera: the newest item, at most once per batch; older ones are dropped (and counted)."""
    IN_ORDER = "in_order"
    """Files and API requests: oldest first, one per round, as many as fit."""


@dataclass(frozen=True, slots=True)
class LaneHead:
    """What the scheduler sees of one lane at one instant."""

    waiting: int
    take: Take


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do now.

    Attributes:
        takes: Lane indices, one entry per item to take now, in this order.
        close: The batch is complete once these are taken.
        wait_until: When not closing: wake at this time at the latest to decide
            again (``None``: the batch is empty; wait for something to arrive).
    """

    takes: tuple[int, ...]
    close: bool
    wait_until: float | None


def plan(heads: Sequence[LaneHead], *, start: int, size: int, served: frozenset[int], max_size: int,
         opened_at: float | None, now: float, max_wait_s: float) -> Decision:
    """Decides what to add to a batch being collected.

    Rounds go across the lanes starting at ``start``: each round takes one item
    from every lane that has one (a ``FRESHEST`` lane only if it is not in
    ``served``, the lanes already in the batch), until the batch holds
    ``max_size`` items or no lane can give. A batch closes when full, or when
    nothing more is waiting and ``max_wait_s`` has passed since its first item
    (``opened_at``; ``now`` when the first items are taken in this call).

    Args:
        heads: The lanes, in the worker's order.
        start: The lane the first round starts at (the worker rotates it per batch).
        size: Items already in the batch.
        served: Indices of ``FRESHEST`` lanes already in the batch.
        max_size: Items per batch at most.
        opened_at: When the batch's first item was taken, or None while it is empty.
        now: The current time, on the same clock.
        max_wait_s: How long an open batch waits for more items.
    """
    room = max_size - size
    remaining = [head.waiting if head.take is Take.IN_ORDER else min(head.waiting, 1) for head in heads]
    for index in served:
        if 0 <= index < len(remaining) and heads[index].take is Take.FRESHEST:
            remaining[index] = 0
    order = [(start + offset) % len(heads) for offset in range(len(heads))] if heads else []
    takes: list[int] = []
    while len(takes) < room:
        round_takes = [index for index in order if remaining[index] > 0][: room - len(takes)]
        if not round_takes:
            break
        for index in round_takes:
            remaining[index] -= 1
        takes.extend(round_takes)
    total = size + len(takes)
    if total >= max_size:
        return Decision(tuple(takes), close=True, wait_until=None)
    if total == 0:
        return Decision((), close=False, wait_until=None)
    deadline = (opened_at if opened_at is not None else now) + max_wait_s
    if now >= deadline:
        return Decision(tuple(takes), close=True, wait_until=None)
    return Decision(tuple(takes), close=False, wait_until=deadline)
