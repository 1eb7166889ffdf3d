"""Logging set-up: one line per record, credentials redacted everywhere,
repeated warnings and errors folded into one line with a count.

FFmpeg's own log lines reach Python through PyAV's logging bridge and pass
through the same filters.
"""

from __future__ import annotations

import collections
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .redact import redact


class RedactingFilter(logging.Filter):
    """Rewrites each record's final message with credentials removed."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if record.exc_info and record.exc_info[1] is not None:
            cleaned += "\n" + redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
            record.exc_text = None
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return True


_Key = tuple[str, int, str, str]  # logger, level, message, exception


@dataclass(slots=True)
class _Repeats:
    first_at: float
    count: int = 0


class RepeatFilter(logging.Filter):
    """Lets the first of identical WARNING-or-worse records through, then counts the rest.

    Identical means the same logger, level, message and exception. Repeats
    within ``window_s`` of the first are dropped and counted. When the window
    has closed, the next record logged reports the count: the next identical
    one carries it (``... [and 199 more like it in 61 s]``); any other record
    has it logged as a line of its own just before itself. A count is lost
    only if nothing at all is logged after its window. At most
    ``max_messages`` messages are remembered, the oldest forgotten first, so
    varied messages cannot grow it without bound.

    A filter on the handler rather than a helper at the call sites: it covers
    every logger, the libraries' (uvicorn, PyAV's FFmpeg bridge) included, and
    no call site can forget it.

    Args:
        handler: The handler this filter sits on; counts are reported through it.
        window_s: How long identical records are folded.
        max_messages: Messages remembered at most.
        clock: Monotonic seconds (tests pass a fake).
    """

    def __init__(self, handler: logging.Handler, window_s: float = 60.0, max_messages: int = 1000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.handler = handler
        self.window_s = window_s
        self.max_messages = max_messages
        self.clock = clock
        self._seen: collections.OrderedDict[_Key, _Repeats] = collections.OrderedDict()  # oldest window first
        self._lock = threading.Lock()
        self._reporting = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(self._reporting, "active", False):
            return True  # a count this filter reports itself
        try:
            message = record.getMessage()
        except Exception:  # the handler reports the bad format string
            return True
        now = self.clock()
        key = _key(record, message)
        with self._lock:
            closed = self._close_windows(now)
            passes = record.levelno < logging.WARNING or self._first_in_window(key, now)
        own = closed.pop(key, None)
        if passes and own is not None:
            record.msg, record.args = f"{message} [and {own[0]} more like it in {own[1]:.0f} s]", None
        self._report(closed)
        return passes

    def _first_in_window(self, key: _Key, now: float) -> bool:
        seen = self._seen.get(key)
        if seen is not None:
            seen.count += 1
            return False
        self._seen[key] = _Repeats(now)
        while len(self._seen) > self.max_messages:
            self._seen.popitem(last=False)
        return True

    def _close_windows(self, now: float) -> dict[_Key, tuple[int, float]]:
        """Forgets the windows that have closed; returns the counts of those with repeats, and their ages."""
        closed: dict[_Key, tuple[int, float]] = {}
        while self._seen:
            key, seen = next(iter(self._seen.items()))
            if now - seen.first_at < self.window_s:
                break
            del self._seen[key]
            if seen.count:
                closed[key] = (seen.count, now - seen.first_at)
        return closed

    def _report(self, closed: dict[_Key, tuple[int, float]]) -> None:
        if not closed:
            return
        self._reporting.active = True
        try:
            for (name, level, message, _), (count, age) in closed.items():
                self.handler.handle(logging.LogRecord(name, level, __file__, 0, "%s [repeated %d more times in %.0f s]",
                                                      (message, count, age), None))
        finally:
            self._reporting.active = False


def _key(record: logging.LogRecord, message: str) -> _Key:
    error = record.exc_info[1] if record.exc_info else None
    return record.name, record.levelno, message, f"{type(error).__name__}: {error}" if error is not None else ""


def setup_logging(level: str = "INFO") -> None:
    """Sends log records to stderr, one line each, through the repeat and redacting filters."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    handler.addFilter(RepeatFilter(handler))  # first: a dropped repeat costs no redaction
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for own in ("uvicorn", "uvicorn.error", "uvicorn.access"):  # uvicorn's own config may have given them
        logger = logging.getLogger(own)                            # handlers: theirs would skip the filters
        logger.handlers[:] = []
        logger.propagate = True
    for noisy in ("uvicorn.access", "httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        import av.logging

        av.logging.set_level(av.logging.ERROR)
    except ImportError:  # pragma: no cover - av is a dependency
        pass
