"""A real RTSP camera (GStreamer's server) that dies, stalls, flaps or never answers.

Each test runs the analyzer in-process with the fake detector and watches
what a user sees: detections and status messages on the websocket, and
``GET /streams``.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

import pytest

from ..rtsp import RtspServer, needs_rtsp
from .helpers import (
    AcceptingListener,
    Listener,
    analyzer,
    children,
    fd_count,
    streams,
    tcp_connections,
    thread_count,
    thread_cpu_s,
    thread_named,
    wait_until,
)

pytestmark = needs_rtsp

READ_TIMEOUT_S = 3.0
OPEN_TIMEOUT_S = 3.0
CEILING_S = 4.0


def camera(url: str, stream_id: str = "cam", **extra: Any) -> dict[str, Any]:
    return {"kind": "url", "id": stream_id, "url": url, "open_timeout_s": OPEN_TIMEOUT_S,
            "read_timeout_s": READ_TIMEOUT_S, "reconnect": {"initial_s": 0.5, "max_s": CEILING_S}, **extra}


def first_detection_after(listener: Listener, stream: str, after: float, timeout_s: float) -> float | None:
    """Seconds from ``after`` to the first detections message of ``stream``, or None."""
    found: list[float] = []

    def arrived() -> bool:
        found[:] = [t for t, _ in listener.detections(stream, after)]
        return bool(found)

    return found[0] - after if wait_until(arrived, timeout_s) else None


def state_after(listener: Listener, stream: str, state: str, after: float, timeout_s: float) -> float | None:
    """Seconds from ``after`` to the status message ``state`` of ``stream``, or None."""
    found: list[float] = []

    def arrived() -> bool:
        found[:] = [t for t, s in listener.states(stream, after) if s == state]
        return bool(found)

    return found[0] - after if wait_until(arrived, timeout_s) else None


@pytest.mark.timeout(90)
def test_server_killed_for_10_s_then_restarted() -> None:
    with RtspServer() as server, analyzer([camera(server.url)]) as base, Listener(base) as ws:
        assert first_detection_after(ws, "cam", 0, 30) is not None, "no frames from the camera"
        server.kill()
        killed = time.monotonic()
        assert state_after(ws, "cam", "reconnecting", killed, 10) is not None
        assert streams(base)["cam"]["state"] == "reconnecting"
        time.sleep(max(0.0, 10 - (time.monotonic() - killed)))
        server.restart()
        restarted = time.monotonic()
        resumed = first_detection_after(ws, "cam", restarted, 15)
        assert resumed is not None and resumed <= 6.0, f"frames resumed {resumed} s after the restart"
        assert state_after(ws, "cam", "running", restarted, 5) is not None
        described = streams(base)["cam"]
        assert described["state"] == "running" and described["reconnects"] == 1
        print(f"frames resumed {resumed:.2f} s after the restart")


@pytest.mark.timeout(90)
def test_half_open_stall_is_detected_and_recovered() -> None:
    with RtspServer() as server, analyzer([camera(server.url)]) as base, Listener(base) as ws:
        assert first_detection_after(ws, "cam", 0, 30) is not None
        server.pause()  # SIGSTOP: the TCP session stays open, nothing arrives
        paused = time.monotonic()
        try:
            detected = state_after(ws, "cam", "reconnecting", paused, READ_TIMEOUT_S + 10)
            assert detected is not None and detected <= READ_TIMEOUT_S + 3, f"stall noticed after {detected} s"
            time.sleep(max(0.0, 10 - (time.monotonic() - paused)))
        finally:
            server.resume()
        resumed_at = time.monotonic()
        resumed = first_detection_after(ws, "cam", resumed_at, 15)
        assert resumed is not None and resumed <= 3.0, f"frames resumed {resumed} s after SIGCONT"
        assert streams(base)["cam"]["state"] == "running"
        print(f"stall noticed after {detected:.2f} s, frames resumed {resumed:.2f} s after SIGCONT")


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_source_down_at_start_for_60_s() -> None:
    with AcceptingListener(silent=False) as down:  # a camera port that hangs up at once: attempts are visible
        port = down.port
        sources = [camera(f"rtsp://127.0.0.1:{port}/cam"),
                   {"kind": "synthetic", "id": "other", "fps": 10, "width": 320, "height": 240}]
        with analyzer(sources) as base, Listener(base) as ws:
            assert wait_until(lambda: len(down.accepts) >= 1, 10)
            capture = thread_named("capture:cam")
            assert capture.native_id is not None
            cpu_before, wall_before = thread_cpu_s(capture.native_id), time.monotonic()
            time.sleep(60 - (time.monotonic() - down.accepts[0]))
            cpu = (thread_cpu_s(capture.native_id) - cpu_before) / (time.monotonic() - wall_before)
            attempts = list(down.accepts)
            down.close()
            other = [t for t, _ in ws.detections("other", after=wall_before)]
            assert streams(base)["cam"]["state"] == "reconnecting"
            with RtspServer(port=port) as server:
                appeared = time.monotonic()
                connected = first_detection_after(ws, "cam", appeared, CEILING_S + 10)
                assert server.port == port
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    print(f"{len(attempts)} attempts, gaps {[round(g, 2) for g in gaps]}, capture CPU {cpu:.2%}, "
          f"connected {connected} s after the server appeared")
    assert min(gaps) >= 0.45, gaps
    assert all(3.5 <= g <= 10 for g in gaps[-5:]), f"the waits do not settle at the 4 s ceiling: {gaps}"
    assert gaps[:3] == sorted(gaps[:3]), f"the first waits do not grow: {gaps}"
    assert cpu < 0.05, f"retrying used {cpu:.1%} of a core"
    assert connected is not None and connected <= CEILING_S + 3
    assert len(other) >= 0.7 * 10 * (appeared - wall_before - 1), "the other source slowed down"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_24_flaps_reconnect_24_times_without_leaks() -> None:
    flaps = 24
    with RtspServer() as server, analyzer([camera(server.url)]) as base, Listener(base) as ws:
        assert first_detection_after(ws, "cam", 0, 30) is not None
        me = os.getpid()
        # Baseline after one reconnect: the reconnect path's threads and imports exist.
        server.kill()
        server.restart()
        assert wait_until(lambda: streams(base)["cam"]["reconnects"] == 1, 15)
        threads, fds, kids = thread_count(), fd_count(), len(children())
        reconnects_before = streams(base)["cam"]["reconnects"]
        most_readers = 0
        for _ in range(flaps):
            cycle = time.monotonic()
            server.kill()
            time.sleep(1.0)
            server.restart()
            came_back = time.monotonic()
            assert first_detection_after(ws, "cam", came_back, 15) is not None, "no frames after a restart"
            while time.monotonic() < cycle + 5:
                most_readers = max(most_readers, tcp_connections(me, server.port))
                time.sleep(0.1)
        reconnects = streams(base)["cam"]["reconnects"] - reconnects_before
        grown = (thread_count() - threads, fd_count() - fds, len(children()) - kids)
        zombies = [c for c in children() if c[1] == "Z"]
        print(f"{flaps} flaps: {reconnects} reconnects; threads/fds/children grew by {grown}; "
              f"at most {most_readers} reader(s)")
    assert abs(reconnects - flaps) <= 1
    assert all(g <= 2 for g in grown), grown
    assert not zombies
    assert most_readers == 1


@pytest.mark.timeout(60)
def test_accept_but_silent_server_fails_the_open_in_time_and_is_retried() -> None:
    with AcceptingListener(silent=True) as silent:
        source = camera(f"rtsp://127.0.0.1:{silent.port}/cam")
        with analyzer([source]) as base:
            assert wait_until(lambda: len(silent.closed_by_peer) >= 2 and len(silent.accepts) >= 3, 30)
            described = streams(base)["cam"]
    print(f"opens given up after {[round(s, 2) for s in silent.closed_by_peer]} s")
    assert all(s <= OPEN_TIMEOUT_S + 1 for s in silent.closed_by_peer), silent.closed_by_peer
    assert described["state"] == "reconnecting" and described["detail"]
