"""What the bench asks of a running analyzer over HTTP, with the standard library only: a plain
install of stream-detect has no HTTP client package."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class Analyzer:
    """A ``stream-detect run`` process started by the bench: its address and process id."""

    base: str
    pid: int


@contextlib.contextmanager
def running_analyzer(config: dict[str, Any], load_timeout_s: float = 900.0) -> Iterator[Analyzer]:
    """``stream-detect run`` on ``config`` (its server on port 0) in its own process, its model loaded;
    stopped (SIGTERM, then SIGKILL after 30 s) when the block ends."""
    with tempfile.TemporaryDirectory(prefix="stream-detect-bench-") as directory:
        path = Path(directory) / "run.yaml"
        path.write_text(yaml.safe_dump(config))
        with open(Path(directory) / "run.log", "w+") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "stream_detect", "--log-level", "WARNING", "run", "--config", str(path)],
                stdout=subprocess.PIPE, stderr=log, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            try:
                assert process.stdout is not None
                line = process.stdout.readline()
                if "serving on" not in line:
                    log.seek(0)
                    raise RuntimeError(f"stream-detect run did not start: {log.read()[-2000:]}")
                base = line.strip().rsplit(" ", 1)[1]
                wait_ready(base, load_timeout_s)
                yield Analyzer(base, process.pid)
            finally:
                stop(process)


def stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within 30 s."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def get_json(url: str, timeout_s: float = 10.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return json.loads(response.read())


def wait_ready(base: str, timeout_s: float) -> None:
    """Waits until ``/healthz`` answers 200 (the model is loaded); fails at once when it reports a failure."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=5) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as error:
            body = error.read().decode(errors="replace")
            if "failed" in body:
                raise RuntimeError(f"the model failed to load: {body}") from None
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the model did not load within {timeout_s:.0f} s")
