"""A real webhook receiver, as its own process, that checks signatures with the ``standardwebhooks`` package.

``python -m tests.notify.webhook_receiver --secret whsec_... --log FILE [--port P]
[--status 200] [--fail-first N --fail-status 503 --retry-after V] [--location URL]
[--delay-s S] [--max-s S]`` listens on 127.0.0.1 (port 0: any free one), prints
``listening on PORT`` and answers each POST: signatures that the
specification's own implementation does not accept get 401; otherwise the
first ``N`` attempts of each ``webhook-id`` get ``--fail-status`` (with
``Retry-After`` when given) and later ones ``--status`` (with ``Location`` when
given), after sleeping ``--delay-s``. Every request is one JSON line in the
log file, flushed at once: webhook id, event id, the signature's verdict, the
answer, when. The process ends by itself after ``--max-s``.

:func:`receiving` runs it for a test and stops it on exit; a receiver that is
"down" is one not started yet (or stopped) on a port chosen with
:func:`free_port`.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Receiver:
    process: subprocess.Popen[str]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def requests(self) -> list[dict[str, Any]]:
        """Every request so far, in order (complete lines only)."""
        if not self.log_path.exists():
            return []
        lines = self.log_path.read_text().splitlines(keepends=True)
        return [json.loads(line) for line in lines if line.endswith("\n")]

    def accepted(self) -> list[dict[str, Any]]:
        """The requests whose signature verified and that were answered 2xx."""
        return [r for r in self.requests() if r["verified"] and 200 <= r["answered"] < 300]


@contextlib.contextmanager
def receiving(secret: str, log_path: Path, *, port: int = 0, **options: Any) -> Iterator[Receiver]:
    """Runs a receiver process (``options``: the command line's, ``fail_first=2`` for ``--fail-first 2``)
    until it prints its port; stops it on exit."""
    args = [sys.executable, "-m", "tests.notify.webhook_receiver", "--secret", secret, "--log", str(log_path),
            "--port", str(port)]
    for name, value in options.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("listening on "), f"receiver did not start: {line!r} {process.stderr}"
        yield Receiver(process, int(line.split()[-1]), log_path)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.05) -> float:
    """Waits for ``condition``; the seconds it took. Fails the test after ``timeout_s``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(interval_s)
    return time.monotonic() - started


# --- the receiver process ----------------------------------------------------------------


def _serve(options: argparse.Namespace) -> None:
    verifier = Webhook(options.secret)
    attempts: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    log = open(options.log, "a", encoding="utf-8")  # noqa: SIM115  # open for the process's life

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # the name http.server calls
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {key.lower(): value for key, value in self.headers.items()}
            try:
                event = verifier.verify(body, headers)
                verified, problem = True, None
            except (WebhookVerificationError, ValueError) as error:
                event, verified, problem = None, False, str(error)
            webhook_id = headers.get("webhook-id", "")
            with lock:
                attempts[webhook_id] += 1
                attempt = attempts[webhook_id]
            if not verified:
                status = 401
            elif attempt <= options.fail_first:
                status = options.fail_status
            else:
                status = options.status
            time.sleep(options.delay_s)
            record = {"webhook_id": webhook_id, "event_id": event.get("id") if isinstance(event, dict) else None,
                      "timestamp": headers.get("webhook-timestamp"), "verified": verified, "problem": problem,
                      "answered": status, "attempt": attempt, "at": time.time(), "path": self.path,
                      "content_type": headers.get("content-type"), "authorization": headers.get("authorization")}
            self.send_response(status)
            if status == options.fail_status and options.retry_after is not None:
                self.send_header("Retry-After", options.retry_after)
            if options.location and 300 <= status < 400:
                self.send_header("Location", options.location)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
            with lock:
                log.write(json.dumps(record) + "\n")
                log.flush()

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", options.port), Handler)
    server.daemon_threads = True
    threading.Timer(options.max_s, lambda: os.kill(os.getpid(), signal.SIGTERM)).start()
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever(poll_interval=0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--status", type=int, default=200)
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--fail-status", type=int, default=503)
    parser.add_argument("--retry-after", default=None)
    parser.add_argument("--location", default=None)
    parser.add_argument("--delay-s", type=float, default=0.0)
    parser.add_argument("--max-s", type=float, default=120.0)
    _serve(parser.parse_args())


if __name__ == "__main__":
    main()
