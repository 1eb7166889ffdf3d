#!/usr/bin/env python3
"""Glass-to-glass latency of the dashboard's two pictures: MJPEG and H.264 (HLS through hls.js).

Two lavfi cameras run in-process, each with its own clock (pts) burned into
the picture as a 24-bit barcode of milliseconds: ``h264`` with
``restream: {hls: true}`` (the dashboard plays it as H.264) and ``mjpeg``
without (the dashboard shows its MJPEG preview). Headless Chromium opens the
dashboard; every animation frame, the page draws each tile's picture on a
canvas and reads the barcode. The websocket's detections messages give each
stream's ``captured_at`` of each pts, so a picture showing pts ``p`` at
wall-clock time ``w`` is ``w - captured_at(p)`` seconds old: from the
moment stream-detect read the frame off the camera to the page's paint
(``captured_at`` of the nearest pts with a message when that frame was not
detected on). Both ends read the same machine's clock. A source that falls
behind real time on a busy machine does not count against the picture.

Usage: ``python scripts/latency_restream.py [--seconds 20] [--size 1280x720] [--fps 15]``
(needs Debian's chromium and Playwright, as the tests do). Prints the
percentiles and the machine's load.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from websockets.sync.client import connect

from stream_detect.commands.run import bind_socket
from stream_detect.compose import build_app
from stream_detect.config import parse_config
from stream_detect.pipeline import Pipeline
from stream_detect.records import Detections
from stream_detect.server.runner import build_server

BITS, BIT_WIDTH, BAR_HEIGHT = 24, 16, 24
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]

# Reads every tile's barcode each animation frame for ``seconds``; returns {stream: [[wall ms, pts ms], ...]}.
SAMPLER = """async ([seconds, bits, bitWidth, barHeight]) => {
  const canvas = document.createElement("canvas");
  canvas.width = bits * bitWidth; canvas.height = barHeight;
  const context = canvas.getContext("2d", { willReadFrequently: true });
  const found = {};
  const read = (element) => {
    context.drawImage(element, 0, 0, canvas.width, canvas.height, 0, 0, canvas.width, canvas.height);
    const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
    let value = 0;
    for (let bit = 0; bit < bits; bit++) {
      const at = ((barHeight >> 1) * canvas.width + bit * bitWidth + (bitWidth >> 1)) * 4;
      if (pixels[at] > 128) value += 2 ** bit;
    }
    return value;
  };
  const until = performance.now() + seconds * 1000;
  while (performance.now() < until) {
    await new Promise((resolve) => requestAnimationFrame(resolve));
    const wall = performance.timeOrigin + performance.now();
    for (const tile of document.querySelectorAll("section.tile")) {
      const view = tile.dataset.view || "mjpeg";
      const element = view === "h264" ? tile.querySelector("video.preview-video") : tile.querySelector("img.preview");
      if (view === "h264" ? element.readyState < 2 : !element.naturalWidth) continue;
      (found[tile.dataset.stream] ||= []).push([wall, read(element), view]);
    }
  }
  return found;
}"""


class NoDetections:
    """A detector that finds nothing: nothing is drawn over the barcode."""

    model_id = "none"

    def detect(self, images: Sequence[np.ndarray], threshold: float) -> list[Detections]:
        return [Detections.empty() for _ in images]

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        return height, width

    def close(self) -> None:
        pass


def graph(width: int, height: int, fps: int) -> str:
    clock = f"255*mod(floor(floor(T*1000+0.5)/pow(2,floor(X/{BIT_WIDTH}))),2)"
    return (f"testsrc2=size={width}x{height}:rate={fps}[scene];"
            f"color=c=gray:size={BITS * BIT_WIDTH}x{BAR_HEIGHT}:rate={fps},format=gray,geq=lum='{clock}',"
            f"format=yuv420p[clock];[scene][clock]overlay=0:0")


def capture_times(base: str, seconds: float, stop: threading.Event,
                  found: dict[str, dict[float, float]]) -> None:
    """Each stream's ``captured_at`` by pts, from the websocket's detections messages."""
    with connect(base.replace("http://", "ws://") + "/ws?types=detections", open_timeout=10) as connection:
        deadline = time.monotonic() + seconds
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                message = json.loads(connection.recv(timeout=1.0))
            except TimeoutError:
                continue
            if message.get("type") == "detections" and message.get("pts") is not None:
                found.setdefault(message["stream"], {})[round(message["pts"], 3)] = message["captured_at"]


def captured_at(times: dict[float, float], pts: float) -> float:
    """The capture time of ``pts``: its own, or the nearest pts's shifted by the difference."""
    ordered = sorted(times)
    position = bisect.bisect_left(ordered, pts)
    near = min(ordered[max(0, position - 1):position + 1], key=lambda known: abs(known - pts))
    return times[near] + (pts - near)


def summary(ages: list[float]) -> dict[str, Any]:
    ordered = sorted(ages)
    pick = lambda q: round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))])  # noqa: E731
    return {"samples": len(ordered), "p50_ms": pick(0.5), "p90_ms": pick(0.9), "p99_ms": pick(0.99),
            "mean_ms": round(1000 * statistics.fmean(ordered))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds sampled (after a 10 s warm-up)")
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--fps", type=int, default=15)
    options = parser.parse_args()
    width, height = (int(v) for v in options.size.split("x"))
    from playwright.sync_api import sync_playwright

    config = parse_config({
        "model": {"id": "none"}, "server": {"port": 0},
        "sources": [{"id": "h264", "graph": graph(width, height, options.fps), "restream": {"hls": True},
                     "motion": {"enabled": False}},
                    {"id": "mjpeg", "graph": graph(width, height, options.fps), "motion": {"enabled": False}}],
    })
    pipeline = Pipeline(config, lambda model: NoDetections())
    server = build_server(build_app(pipeline, config.server), config.server, graceful_shutdown_s=2)
    sock = bind_socket("127.0.0.1", 0)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="latency-server")
    thread.start()
    stop = threading.Event()
    found_times: dict[str, dict[float, float]] = {}
    try:
        while not server.started and thread.is_alive():
            time.sleep(0.05)
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        reader = threading.Thread(target=capture_times, args=(base, options.seconds + 60, stop, found_times))
        reader.start()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1600, "height": 900})
                page.goto(base + "/")
                page.locator('section.tile[data-stream="h264"][data-view="h264"]').wait_for(timeout=60_000)
                time.sleep(10)  # the player settles at its live edge
                samples = page.evaluate(SAMPLER, [options.seconds, BITS, BIT_WIDTH, BAR_HEIGHT])
            finally:
                browser.close()
    finally:
        stop.set()
        server.should_exit = True
        thread.join(15)
        sock.close()
    result: dict[str, Any] = {"size": options.size, "fps": options.fps}
    for stream, rows in samples.items():
        times = found_times[stream]
        ages = [wall / 1000 - captured_at(times, pts / 1000) for wall, pts, _ in rows]
        result[f"{stream} ({rows[-1][2]})"] = summary([age for age in ages if -1 < age < 60])
    result["uptime"] = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    result["cpus"] = os.cpu_count()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
