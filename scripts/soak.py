#!/usr/bin/env python3
"""Soak test: a real ``stream-detect run`` against a flapping RTSP camera and slow websocket clients.

Run it from the repository root with the project's venv (the RTSP camera is
GStreamer's server run with the system python3, as in the tests)::

    .venv/bin/python scripts/soak.py --minutes 10

For N minutes the camera is killed every ``--up-s`` seconds and restarted
``--down-s`` seconds later; a synthetic camera runs beside it. One fast
websocket client measures latency (capture to arrival), two slow ones read a
message a second, and a client that never reads connects again every minute.
Every ``--sample-s`` seconds it prints the server's RSS, threads, file
descriptors, child processes, reconnect count and the fast client's latency,
then the first and last samples side by side. Exit code 1 when the server
died, a flap was not followed by a reconnect, or resources grew past the
limits given.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import yaml
from websockets.sync.client import connect

from stream_detect.stats import percentile
from tests.processes import serving_command
from tests.rtsp import RtspServer, rtsp_unavailable_reason


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--up-s", type=float, default=15.0, help="camera up time per flap")
    parser.add_argument("--down-s", type=float, default=5.0, help="camera down time per flap")
    parser.add_argument("--sample-s", type=float, default=30.0)
    parser.add_argument("--model", help="model directory (default: a tiny DETR built on the spot)")
    parser.add_argument("--max-rss-growth-mb", type=float, default=20.0)
    return parser.parse_args()


def proc_status(pid: int) -> dict[str, int]:
    status = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "Threads"):
            status[key] = int(value.split()[0])
    children = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        children += len(text)
    return {"rss_kb": status["VmRSS"], "threads": status["Threads"],
            "fds": len(list(Path(f"/proc/{pid}/fd").iterdir())), "children": children}


class FastClient(threading.Thread):
    """Reads every message and keeps capture-to-arrival latencies of the current window."""

    def __init__(self, url: str, stop: threading.Event) -> None:
        super().__init__(name="fast-client", daemon=True)
        self.url, self.stop = url, stop
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.messages = 0
        self.errors = 0

    def window(self) -> list[float]:
        with self.lock:
            window, self.latencies = self.latencies, []
        return sorted(window)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with connect(self.url, open_timeout=10) as ws:
                    while not self.stop.is_set():
                        try:
                            message = json.loads(ws.recv(timeout=1))
                        except TimeoutError:
                            continue
                        self.messages += 1
                        if message.get("type") == "detections":
                            with self.lock:
                                self.latencies.append(time.time() - message["captured_at"])
            except Exception:
                self.errors += 1
                self.stop.wait(1)


def slow_client(url: str, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            with connect(url, open_timeout=10, max_queue=4) as ws:
                while not stop.is_set():
                    ws.recv(timeout=5)
                    stop.wait(1.0)
        except Exception:
            stop.wait(1)


def stalled_client(port: int, stop: threading.Event) -> None:
    """Completes the handshake and never reads; a fresh one every minute."""
    while not stop.is_set():
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
            stop.wait(60)


def sample(pid: int, base: str, fast: FastClient, started: float) -> dict[str, Any]:
    streams = {s["id"]: s for s in httpx.get(base + "/streams", timeout=10).json()["streams"]}
    window = fast.window()
    p50, p99 = (percentile(window, 50), percentile(window, 99)) if window else (None, None)
    return {"t_s": round(time.monotonic() - started), **proc_status(pid),
            "reconnects": streams["cam"]["reconnects"], "cam_state": streams["cam"]["state"],
            "latency_p50_ms": None if p50 is None else round(p50 * 1000, 1),
            "latency_p99_ms": None if p99 is None else round(p99 * 1000, 1), "messages": fast.messages}


def show(row: dict[str, Any]) -> None:
    print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)


def main() -> int:
    args = parse_args()
    logging.getLogger("websockets").setLevel(logging.CRITICAL)  # the clients' own ping failures are expected
    reason = rtsp_unavailable_reason()
    if reason:
        print(f"soak: {reason}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    model = args.model
    if model is None:
        from tests.checkpoints import build_tiny_detr

        model = str(build_tiny_detr(workdir / "tiny-detr"))
    stop = threading.Event()
    with RtspServer() as camera:
        config = {
            "model": {"id": model, "device": "cpu", "threshold": 0.3},
            "server": {"port": 0},
            "sources": [
                {"kind": "url", "id": "cam", "url": camera.url, "open_timeout_s": 3, "read_timeout_s": 3,
                 "reconnect": {"initial_s": 0.5, "max_s": 4}},
                {"kind": "synthetic", "id": "synthetic", "fps": 10},
            ],
        }
        (workdir / "soak.yaml").write_text(yaml.safe_dump(config))
        with serving_command("run", "--config", str(workdir / "soak.yaml")) as served:
            pid, base = served.process.pid, served.base
            ws_url = base.replace("http://", "ws://") + "/ws"
            fast = FastClient(ws_url, stop)
            clients: list[threading.Thread] = [fast]
            clients += [threading.Thread(target=slow_client, args=(ws_url, stop), daemon=True) for _ in range(2)]
            clients.append(threading.Thread(target=stalled_client, args=(int(base.rsplit(":", 1)[1]), stop),
                                            daemon=True))
            for client in clients:
                client.start()
            # Warm up: model loaded, clients connected, two flaps (the reconnect path's first
            # allocations); the first sample's latency is that of the warm-up's last 20 s.
            for _ in range(2):
                time.sleep(15)
                camera.kill()
                time.sleep(args.down_s)
                camera.restart()
            time.sleep(10)
            fast.window()
            time.sleep(20)
            started = time.monotonic()
            rows = [sample(pid, base, fast, started)]
            show(rows[0])
            flaps = 0
            next_flap = started + args.up_s
            next_sample = started + args.sample_s
            end = started + args.minutes * 60
            while time.monotonic() < end and served.process.poll() is None:
                now = time.monotonic()
                if now >= next_flap and now + args.down_s < end - 10:
                    camera.kill()
                    flaps += 1
                    time.sleep(args.down_s)
                    camera.restart()
                    next_flap = time.monotonic() + args.up_s
                if time.monotonic() >= next_sample:
                    rows.append(sample(pid, base, fast, started))
                    show(rows[-1])
                    next_sample += args.sample_s
                time.sleep(0.2)
            time.sleep(8)  # the last flap's reconnect
            alive = served.process.poll() is None
            final = sample(pid, base, fast, started) if alive else rows[-1]
            show(final)
            stop.set()
    first = rows[0]
    print(f"\nsoak: {args.minutes:g} min, {flaps} flaps, {final['reconnects'] - first['reconnects']} reconnects")
    for key in ("rss_kb", "threads", "fds", "children", "latency_p50_ms", "latency_p99_ms"):
        print(f"  {key:16} start {first[key]!s:>8}  end {final[key]!s:>8}")
    rss_growth_mb = (final["rss_kb"] - first["rss_kb"]) / 1024
    print(f"  RSS growth {rss_growth_mb:+.1f} MB; fast client messages {final['messages']}, errors {fast.errors}")
    ok = (alive and final["reconnects"] - first["reconnects"] >= flaps - 1 and rss_growth_mb <= args.max_rss_growth_mb
          and final["threads"] <= first["threads"] + 2 and final["fds"] <= first["fds"] + 2)
    print("soak: OK" if ok else "soak: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
