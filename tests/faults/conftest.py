"""Every fault test also checks that nothing raised unhandled: no exception
escaped a thread and none was logged with its traceback."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def no_unhandled_exceptions(caplog: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    escaped: list[str] = []
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        escaped.append(f"{args.thread.name if args.thread else '?'}: {args.exc_type.__name__}: {args.exc_value}")
        previous(args)

    threading.excepthook = hook
    caplog.set_level(logging.WARNING)
    try:
        yield escaped
    finally:
        threading.excepthook = previous
    logged = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.exc_info]
    assert not escaped, f"exceptions escaped threads: {escaped}"
    assert not logged, f"exceptions logged with a traceback: {logged}"
