"""The batching decision as tables: what is taken, when a batch closes, how long it waits."""

from __future__ import annotations

import pytest

from stream_detect.detect.batching import Decision, LaneHead, Take, plan

LIVE, ORDER = Take.FRESHEST, Take.IN_ORDER


def heads(*lanes: tuple[int, Take]) -> list[LaneHead]:
    return [LaneHead(waiting, take) for waiting, take in lanes]


@pytest.mark.parametrize(("lanes", "start", "size", "served", "max_size", "takes", "close"), [
    # Live lanes give their freshest frame once per batch, however many they hold.
    (heads((5, LIVE), (3, LIVE)), 0, 0, set(), 8, (0, 1), False),
    # ... and not again once in the batch.
    (heads((5, LIVE), (3, LIVE)), 0, 2, {0, 1}, 8, (), False),
    (heads((5, LIVE), (3, LIVE)), 0, 1, {0}, 8, (1,), False),
    # File and API lanes give in order, one per round, round-robin.
    (heads((3, ORDER), (2, ORDER)), 0, 0, set(), 8, (0, 1, 0, 1, 0), False),
    (heads((3, ORDER), (2, ORDER)), 0, 0, set(), 4, (0, 1, 0, 1), True),
    # A burst in one lane cannot starve another: rounds alternate.
    (heads((100, ORDER), (1, ORDER), (1, LIVE)), 0, 0, set(), 4, (0, 1, 2, 0), True),
    # The starting lane rotates: the round begins where it is told.
    (heads((1, LIVE), (1, LIVE), (1, LIVE)), 1, 0, set(), 2, (1, 2), True),
    (heads((1, LIVE), (1, LIVE), (1, LIVE)), 2, 0, set(), 2, (2, 0), True),
    (heads((4, ORDER), (4, ORDER)), 1, 0, set(), 3, (1, 0, 1), True),
    # Empty lanes are skipped; a full batch takes nothing more.
    (heads((0, ORDER), (0, LIVE), (2, ORDER)), 0, 0, set(), 8, (2, 2), False),
    (heads((5, ORDER)), 0, 4, set(), 4, (), True),
    # A live lane mixed with an in-order one: the live lane once, the other as room allows.
    (heads((9, LIVE), (9, ORDER)), 0, 0, set(), 4, (0, 1, 1, 1), True),
    # No lanes at all.
    ([], 0, 0, set(), 4, (), False),
])
def test_what_is_taken(lanes: list[LaneHead], start: int, size: int, served: set[int], max_size: int,
                       takes: tuple[int, ...], close: bool) -> None:
    decision = plan(lanes, start=start, size=size, served=frozenset(served), max_size=max_size,
                    opened_at=100.0 if size else None, now=100.0, max_wait_s=0.01)
    assert decision.takes == takes
    assert decision.close is close


@pytest.mark.parametrize(("lanes", "size", "opened_at", "now", "max_wait_s", "expected"), [
    # Nothing anywhere: an empty batch waits for an arrival, with no deadline.
    (heads((0, LIVE)), 0, None, 10.0, 0.005, Decision((), False, None)),
    # The first items open the batch now: it waits max_wait_s for more.
    (heads((1, LIVE)), 0, None, 10.0, 0.005, Decision((0,), False, 10.005)),
    # An open batch keeps its deadline from its first item...
    (heads((0, LIVE)), 1, 10.0, 10.002, 0.005, Decision((), False, 10.005)),
    (heads((1, ORDER)), 1, 10.0, 10.002, 0.005, Decision((0,), False, 10.005)),
    # ... and closes once it has passed, taking what is there first.
    (heads((0, LIVE)), 1, 10.0, 10.005, 0.005, Decision((), True, None)),
    (heads((1, ORDER)), 1, 10.0, 10.1, 0.005, Decision((0,), True, None)),
    # No wait at all: whatever is there is one batch, at once.
    (heads((2, ORDER)), 0, None, 10.0, 0.0, Decision((0, 0), True, None)),
    # Full closes before the deadline.
    (heads((3, ORDER)), 1, 10.0, 10.001, 5.0, Decision((0, 0, 0), True, None)),
])
def test_when_a_batch_closes_and_how_long_it_waits(lanes: list[LaneHead], size: int, opened_at: float | None,
                                                   now: float, max_wait_s: float, expected: Decision) -> None:
    decision = plan(lanes, start=0, size=size, served=frozenset(), max_size=4, opened_at=opened_at, now=now,
                    max_wait_s=max_wait_s)
    assert decision.takes == expected.takes and decision.close is expected.close
    if expected.wait_until is None:
        assert decision.wait_until is None
    else:
        assert decision.wait_until == pytest.approx(expected.wait_until)
