"""A real RTSP camera for tests: ``scripts/rtsp_server.py`` run as a process with the system python3.

The server needs GStreamer's Python bindings from Debian (``python3-gi``,
``gir1.2-gst-rtsp-server-1.0``, ``gstreamer1.0-plugins-base/-good/-ugly``),
which the project's venv cannot import; tests that need it skip with the
reason when they are missing (``needs_rtsp`` or the ``rtsp_server`` fixture).

Usage::

    with RtspServer() as server:           # a free port, 640x360 at 15 fps
        container = av.open(server.url, options={"rtsp_transport": "tcp"}, timeout=(5, 5))
        ...
        server.kill()                      # a crash: SIGKILL
        server.restart()                   # same port, same URL
        server.pause()                     # a stall: SIGSTOP; resume() continues
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import pytest

SYSTEM_PYTHON = "/usr/bin/python3"
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "rtsp_server.py"
READY_PREFIX = "READY "
EXIT_BIND_FAILED = 2  # scripts/rtsp_server.py's exit code when it cannot listen
GST_ELEMENTS = ("videotestsrc", "x264enc", "rtph264pay")

_PROBE = f"""
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer
Gst.init(None)
missing = [name for name in {GST_ELEMENTS!r} if Gst.ElementFactory.find(name) is None]
if missing:
    raise SystemExit("GStreamer elements missing: " + ", ".join(missing))
"""


@cache
def rtsp_unavailable_reason() -> str | None:
    """Why the RTSP test server cannot run here, or None when it can (checked once per session)."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"{SYSTEM_PYTHON} not found (the RTSP test server runs with the system python3)"
    try:
        result = subprocess.run([SYSTEM_PYTHON, "-c", _PROBE], capture_output=True, text=True, timeout=30,
                                check=False)
    except subprocess.TimeoutExpired:
        return f"{SYSTEM_PYTHON} took over 30 s to import GStreamer"
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return ("RTSP test server unavailable (install python3-gi, gir1.2-gst-rtsp-server-1.0, "
                f"gstreamer1.0-plugins-base/-good/-ugly): {detail}")
    return None


def rtsp_available() -> bool:
    """True when the system python3 can import gi and GstRtspServer and has the encoder elements."""
    return rtsp_unavailable_reason() is None


needs_rtsp = pytest.mark.skipif(not rtsp_available(), reason=rtsp_unavailable_reason() or "")


class RtspServerError(RuntimeError):
    """The RTSP test server did not become ready; the message carries the end of its stderr."""


class RtspServer:
    """``scripts/rtsp_server.py`` as a subprocess: a live H.264 test pattern on ``rtsp://127.0.0.1:PORT/path``.

    A context manager: entering starts the server and waits (at most
    ``ready_timeout`` seconds) for its READY line; leaving stops it. With no
    ``port`` the server binds port 0 and reports the port it got, so there is
    no window in which another process can take it; ``restart()`` reuses that
    port. Every method waits for the processes it ends: no zombies.

    Attributes:
        port: The TCP port, known once started; stays the same across restarts.
        url: ``rtsp://[user:password@]127.0.0.1:PORT/path``; credentials are percent-encoded.
    """

    def __init__(self, port: int | None = None, *, path: str = "/cam", width: int = 640, height: int = 360,
                 fps: int = 15, user: str | None = None, password: str | None = None,
                 ready_timeout: float = 10.0) -> None:
        if (user is None) != (password is None):
            raise ValueError("user and password go together")
        self.path = path if path.startswith("/") else "/" + path
        self.width = width
        self.height = height
        self.fps = fps
        self.user = user
        self.password = password
        self.ready_timeout = ready_timeout
        self._requested_port = port or 0
        self._port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._paused = False
        self._stderr = tempfile.NamedTemporaryFile("w+b", prefix="rtsp-server-", suffix=".log")  # noqa: SIM115

    # -- lifecycle -------------------------------------------------------------

    def __enter__(self) -> RtspServer:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def start(self) -> RtspServer:
        """Starts the server and returns once it listens.

        Raises:
            RtspServerError: it exited or printed nothing within ``ready_timeout``.
        """
        if self.running:
            raise RtspServerError(f"already running on port {self._port}")
        self._start(self._port if self._port is not None else self._requested_port)
        return self

    def restart(self) -> None:
        """Starts the server again on the same port (killing it first if it still runs) and waits for READY.

        A bind failure (the port briefly held by someone else) is retried
        until ``ready_timeout``.
        """
        if self._port is None:
            raise RtspServerError("restart() before the first start()")
        self.kill()
        self._start(self._port)

    def kill(self) -> None:
        """A crash: SIGKILL (works on a paused server too), then reap the process."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
        self._reap(timeout=10)

    def pause(self) -> None:
        """A stall: SIGSTOP. The server keeps its sockets open but sends nothing until ``resume()``."""
        self._require_running().send_signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """SIGCONT after ``pause()``."""
        self._require_running().send_signal(signal.SIGCONT)
        self._paused = False

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL; returns the exit code (None if it never ran).

        A paused server is continued after SIGTERM: a stopped process leaves
        the signal pending until SIGCONT.
        """
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            process.terminate()
            if self._paused:
                process.send_signal(signal.SIGCONT)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
        self._reap(timeout=10)
        return process.returncode

    def close(self) -> None:
        """Stops the server and removes its log; idempotent."""
        self.stop()
        self._stderr.close()

    # -- state -----------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while the server process exists (paused or not)."""
        return self._process is not None and self._process.poll() is None

    @property
    def paused(self) -> bool:
        """True between ``pause()`` and ``resume()``."""
        return self._paused

    @property
    def pid(self) -> int | None:
        """The process id of the current server, if one runs."""
        return self._process.pid if self.running and self._process is not None else None

    @property
    def port(self) -> int:
        """The port the server listens on (the same after ``restart()``)."""
        if self._port is None:
            raise RtspServerError("the server has not been started")
        return self._port

    @property
    def url(self) -> str:
        """``rtsp://[user:password@]127.0.0.1:PORT/path``, credentials percent-encoded."""
        credentials = ""
        if self.user is not None and self.password is not None:
            credentials = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}@"
        return f"rtsp://{credentials}127.0.0.1:{self.port}{self.path}"

    def url_with(self, user: str, password: str) -> str:
        """The server's URL with other credentials, e.g. wrong ones."""
        return f"rtsp://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{self.port}{self.path}"

    def stderr_tail(self, limit: int = 2000) -> str:
        """The last ``limit`` characters the server wrote to stderr (all its runs)."""
        self._stderr.flush()
        return Path(self._stderr.name).read_bytes()[-limit:].decode(errors="replace")

    # -- internals -------------------------------------------------------------

    def _command(self, port: int) -> list[str]:
        command = [SYSTEM_PYTHON, str(SCRIPT), "--port", str(port), "--path", self.path,
                   "--width", str(self.width), "--height", str(self.height), "--fps", str(self.fps)]
        if self.user is not None and self.password is not None:
            command += ["--user", self.user, "--password", self.password]
        return command

    def _start(self, port: int) -> None:
        """Runs the script on ``port`` until it prints READY; retries bind failures until the deadline."""
        deadline = time.monotonic() + self.ready_timeout
        while True:
            process = subprocess.Popen(self._command(port), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=self._stderr, bufsize=0)
            self._process, self._paused = process, False
            line = _read_line(process, deadline)
            if line.startswith(READY_PREFIX):
                self._port = int(line.split()[1].rsplit(":", 1)[1].split("/", 1)[0])
                return
            self.kill()
            if process.returncode != EXIT_BIND_FAILED or time.monotonic() >= deadline:
                raise RtspServerError(f"RTSP server on port {port} not ready within {self.ready_timeout} s "
                                      f"(exit code {process.returncode}, stdout {line!r}); "
                                      f"stderr: {self.stderr_tail()}")
            time.sleep(0.1)

    def _require_running(self) -> subprocess.Popen[bytes]:
        if self._process is None or self._process.poll() is not None:
            raise RtspServerError("the RTSP server is not running")
        return self._process

    def _reap(self, timeout: float) -> None:
        """Waits for the current process and closes its stdout pipe."""
        process = self._process
        if process is None:
            return
        process.wait(timeout)
        if process.stdout is not None:
            process.stdout.close()
        self._paused = False


def _read_line(process: subprocess.Popen[bytes], deadline: float) -> str:
    """The first line ``process`` writes to stdout, or what it wrote before exiting or the deadline."""
    assert process.stdout is not None
    received = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while b"\n" not in received:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                break
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:  # EOF: the process exited
                process.wait(5)
                break
            received += chunk
    return received.split(b"\n", 1)[0].decode(errors="replace").strip()


@pytest.fixture
def rtsp_server() -> Iterator[RtspServer]:
    """A running RTSP test server (640x360, 15 fps, no auth) on a free port; skips when GStreamer is missing."""
    reason = rtsp_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with RtspServer() as server:
        yield server
