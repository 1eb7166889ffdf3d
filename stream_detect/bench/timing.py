"""Small timing helpers: wall time and medians in milliseconds."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def timed(function: Callable[[], T]) -> tuple[T, float]:
    """``function()``'s result and its wall time in seconds."""
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started


def median_ms(seconds: Sequence[float]) -> float:
    return statistics.median(seconds) * 1000 if seconds else float("nan")
