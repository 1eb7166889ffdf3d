"""What the fault tests share: an in-process analyzer with the fake detector, a
websocket listener on its own thread, and what /proc says about a process."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml
from websockets.sync.client import connect

from stream_detect.config import Config, ServerConfig, parse_config
from stream_detect.detect.fake import FakeDetector
from stream_detect.pipeline import Pipeline

from ..processes import Served, serving_command
from ..server.serving import serving, ws_url


def fake_pipeline(sources: list[dict[str, Any]], **extra: Any) -> Pipeline:
    """A pipeline of ``sources`` with the fake detector (the model does not matter here)."""
    config: Config = parse_config({"sources": sources, "model": {"id": "fake", "max_batch_wait_ms": 1}, **extra})
    return Pipeline(config, lambda model: FakeDetector())


@contextlib.contextmanager
def analyzer(sources: list[dict[str, Any]], server: ServerConfig | None = None, **extra: Any) -> Iterator[str]:
    """Serves a fake-detector pipeline of ``sources`` on 127.0.0.1:0; yields its base URL."""
    with serving(fake_pipeline(sources, **extra), server) as base:
        yield base


def wait_until(condition: Callable[[], bool], timeout_s: float, poll_s: float = 0.05) -> bool:
    """Polls ``condition`` until it holds or ``timeout_s`` passes (bounded: at most timeout/poll calls)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)


def streams(base: str) -> dict[str, dict[str, Any]]:
    """``GET /streams`` by stream id."""
    response = httpx.get(base + "/streams", timeout=10)
    response.raise_for_status()
    return {s["id"]: s for s in response.json()["streams"]}


class Listener:
    """A websocket client on its own thread, keeping every message with its arrival time.

    Bounded: stops after ``max_messages`` or when closed.
    """

    def __init__(self, base: str, query: str = "", max_messages: int = 200_000, **connect_args: Any) -> None:
        self._stack = contextlib.ExitStack()
        self._connection = self._stack.enter_context(
            connect(ws_url(base, query), open_timeout=10, max_size=2**22, **connect_args))
        self._max = max_messages
        self._lock = threading.Lock()
        self._messages: list[tuple[float, dict[str, Any]]] = []
        self.close_code: int | None = None
        self._thread = threading.Thread(target=self._run, name="test-ws-listener", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            for _ in range(self._max):
                raw = self._connection.recv()
                with self._lock:
                    self._messages.append((time.monotonic(), json.loads(raw)))
        except ConnectionClosed as closed:
            self.close_code = closed.rcvd.code if closed.rcvd is not None else None
        except Exception:  # the test reads what arrived; it fails on what is missing
            pass

    def messages(self) -> list[tuple[float, dict[str, Any]]]:
        with self._lock:
            return list(self._messages)

    def detections(self, stream: str, after: float = 0.0) -> list[tuple[float, dict[str, Any]]]:
        return [(t, m) for t, m in self.messages() if t >= after and m["type"] == "detections"
                and m["stream"] == stream]

    def states(self, stream: str, after: float = 0.0) -> list[tuple[float, str]]:
        return [(t, m["state"]) for t, m in self.messages() if t >= after and m["type"] == "status"
                and m["stream"] == stream]

    def wait_closed(self, timeout_s: float) -> bool:
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def close(self) -> None:
        self._stack.close()
        self._thread.join(10)

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- a real process ----------------------------------------------------------


@contextlib.contextmanager
def fake_server(tmp_path: Path, sources: list[dict[str, Any]], server: dict[str, Any] | None = None,
                boxes: int = 1) -> Iterator[Served]:
    """A real ``stream-detect run`` process with the fake detector, serving ``sources``; ready when yielded."""
    config = {"model": {"id": "fake", "max_batch_wait_ms": 1}, "sources": sources,
              "server": {"port": 0, **(server or {})}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    with serving_command("run", "--config", str(tmp_path / "config.yaml"), module="tests.faults.fake_run",
                         env={"FAKE_BOXES": str(boxes)}) as served:
        assert wait_until(lambda: httpx.get(served.base + "/healthz", timeout=5).status_code == 200, 20)
        yield served


def stalled_client(port: int) -> socket.socket:
    """Completes the websocket handshake, then never reads (default socket buffers)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert b" 101 " in sock.recv(1024)
    return sock


# -- /proc ---------------------------------------------------------------------


def rss_bytes(pid: int | None = None) -> int:
    for line in Path(f"/proc/{pid or os.getpid()}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def thread_count(pid: int | None = None) -> int:
    return len(os.listdir(f"/proc/{pid or os.getpid()}/task"))


def fd_count(pid: int | None = None) -> int:
    return len(os.listdir(f"/proc/{pid or os.getpid()}/fd"))


def children(pid: int | None = None) -> list[tuple[int, str]]:
    """(pid, state letter) of every child process of ``pid``."""
    found = []
    for task in os.listdir(f"/proc/{pid or os.getpid()}/task"):
        with contextlib.suppress(OSError):
            for child in Path(f"/proc/{pid or os.getpid()}/task/{task}/children").read_text().split():
                with contextlib.suppress(OSError):
                    stat = Path(f"/proc/{child}/stat").read_text()
                    found.append((int(child), stat.rsplit(")", 1)[1].split()[0]))
    return found


def thread_cpu_s(native_id: int) -> float:
    """User + system CPU seconds of one thread of this process."""
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_named(name: str) -> threading.Thread:
    for thread in threading.enumerate():
        if thread.name == name:
            return thread
    raise AssertionError(f"no thread named {name!r}")


TCP_STATES = {"01": "ESTABLISHED", "04": "FIN_WAIT1", "05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE",
              "08": "CLOSE_WAIT", "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING"}


def tcp_sockets(pid: int) -> list[tuple[int, int, str]]:
    """(local port, remote port, state) of every IPv4 TCP socket ``pid`` holds open."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = []
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[9] in inodes:
            found.append((int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16),
                          TCP_STATES.get(fields[3], fields[3])))
    return found


def tcp_connections(pid: int, remote_port: int) -> int:
    """ESTABLISHED connections of ``pid`` to port ``remote_port``."""
    return sum(1 for _, remote, state in tcp_sockets(pid) if remote == remote_port and state == "ESTABLISHED")


class AcceptingListener:
    """A TCP server on 127.0.0.1:0 that records accepts; ``silent`` ones hold the
    connection open and send nothing, others close it at once (a refusing camera)."""

    def __init__(self, silent: bool, port: int = 0) -> None:
        self.silent = silent
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.accepts: list[float] = []
        self.closed_by_peer: list[float] = []  # seconds from accept to the peer's close (silent mode)
        self._held: list[tuple[socket.socket, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-listener", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() and len(self.accepts) < 10_000:
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                self._check_held()
                continue
            now = time.monotonic()
            self.accepts.append(now)
            if self.silent:
                conn.setblocking(False)
                self._held.append((conn, now))
            else:
                conn.close()
            self._check_held()

    def _check_held(self) -> None:
        for conn, accepted in list(self._held):
            try:
                data = conn.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                self.closed_by_peer.append(time.monotonic() - accepted)
                self._held.remove((conn, accepted))
                conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
        for conn, _ in self._held:
            conn.close()

    def __enter__(self) -> AcceptingListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
