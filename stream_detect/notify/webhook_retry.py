"""When to try a delivery again (pure): what an answer means, the backoff, ``Retry-After``.

An answer is :attr:`Verdict.DELIVERED` (2xx), :attr:`Verdict.RETRY`
(connection errors and timeouts, 408, 429, 5xx) or :attr:`Verdict.FINAL`
(any other status: other 4xx, and 3xx, since redirects are never followed: a
receiver that moved must be configured anew, and the signed body is not
sent to a host nobody configured).

The schedule (:class:`RetryPolicy`, defaults): the n-th consecutive failure
waits ``min(max_s, first_s * multiplier ** (n - 1))`` shortened by a random
part of up to ``jitter`` of it, so 1-2 s, 2-4 s, 4-8 s, ... doubling up to
30-60 min from the 12th on; a ``Retry-After`` longer than that wait is
waited instead. About 35 attempts fit in the default 24 h retry horizon.
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass
from datetime import timezone
from email.utils import parsedate_to_datetime

MAX_EXPONENT = 64  # multiplier ** 64 is past any max_s: stops float overflow for long-failing deliveries


class Verdict(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    FINAL = "final"


def verdict(status: int) -> Verdict:
    """What an HTTP status means for the delivery."""
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status in (408, 429) or 500 <= status < 600:
        return Verdict.RETRY
    return Verdict.FINAL


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter.

    Attributes:
        first_s: the wait after the first failure (before jitter).
        multiplier: the growth of the wait per further failure.
        max_s: the longest wait (before jitter).
        jitter: the share of each wait that is random: the wait is drawn from ``[w * (1 - jitter), w]``.
    """

    first_s: float = 2.0
    multiplier: float = 2.0
    max_s: float = 3600.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not (0 < self.first_s <= self.max_s and self.multiplier >= 1 and 0 <= self.jitter < 1):
            raise ValueError(f"retry policy needs 0 < first_s <= max_s, multiplier >= 1 and 0 <= jitter < 1: {self}")

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        """The wait after ``failures`` (>= 1) failures in a row."""
        exponent = min(max(failures, 1) - 1, MAX_EXPONENT)
        wait = min(self.max_s, self.first_s * self.multiplier ** exponent)
        return wait * (1.0 - self.jitter * (rng or random).random())

    def next_wait(self, failures: int, retry_after_s: float | None, rng: random.Random | None = None) -> float:
        """The wait before the next attempt: the backoff, or the receiver's ``Retry-After`` if longer."""
        wait = self.delay(failures, rng)
        return wait if retry_after_s is None else max(wait, retry_after_s)


def retry_after_s(value: str | None, now: float) -> float | None:
    """A ``Retry-After`` header as seconds from ``now`` (epoch seconds): delay-seconds or an HTTP date.

    None when absent or unreadable; a date in the past is 0.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(int(text[:12]))
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # "-0000": UTC as well (RFC 9110 dates are GMT)
        moment = moment.replace(tzinfo=timezone.utc)
    seconds = moment.timestamp() - now
    return max(0.0, seconds) if math.isfinite(seconds) else None
