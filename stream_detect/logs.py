"""Logging set-up: one line per record, credentials redacted everywhere.

FFmpeg's own log lines reach Python through PyAV's logging bridge and pass
through the same redacting filter.
"""

from __future__ import annotations

import logging
import sys

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


def setup_logging(level: str = "INFO") -> None:
    """Sends log records to stderr, one line each, through the redacting filter."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("uvicorn.access", "httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        import av.logging

        av.logging.set_level(av.logging.ERROR)
    except ImportError:  # pragma: no cover - av is a dependency
        pass
