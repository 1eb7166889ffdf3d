"""Running ``stream-detect`` commands that serve, as real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Served:
    process: subprocess.Popen[str]
    base: str
    stderr_path: Path

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()


@contextmanager
def serving_command(*args: str, env: dict[str, str] | None = None, stop: int = signal.SIGTERM,
                    module: str = "stream_detect") -> Iterator[Served]:
    """Runs ``python -m MODULE ARGS`` until it prints its URL; stops it with ``stop`` on exit.

    stderr goes to a file: a pipe nobody reads would fill up and block the
    server's logging.
    """
    with tempfile.NamedTemporaryFile("w", suffix=".log", delete=False) as log:
        process = subprocess.Popen([sys.executable, "-m", module, *args], stdout=subprocess.PIPE,
                                   stderr=log, text=True, env={**os.environ, **(env or {})})
    stderr_path = Path(log.name)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "serving on" in line, f"no serving line: {line!r}; stderr: {stderr_path.read_text()[-2000:]}"
        yield Served(process, line.strip().rsplit(" ", 1)[1], stderr_path)
    finally:
        stop_process(process, stop)


def stop_process(process: subprocess.Popen[str], stop: int = signal.SIGTERM) -> int:
    """Stops ``process`` with ``stop``, then SIGKILL after 15 s; returns its exit code."""
    if process.poll() is None:
        process.send_signal(stop)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    return process.returncode
