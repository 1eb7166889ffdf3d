"""``scripts/cluster-demo``'s program: a head and a worker node, 8 synthetic cameras, all detected, a clean stop."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from stream_detect.cluster.local import loopback_only

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="a loopback-only network namespace needs root and unshare")
def test_the_cluster_demo_detects_every_camera_on_both_nodes() -> None:
    process = subprocess.Popen(loopback_only([sys.executable, "-m", "stream_detect.cluster.demo"]), cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "HF_HUB_OFFLINE": "1"})
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not any("all 8 cameras detected" in line for line in lines):
            assert process.poll() is None, f"the demo stopped: {lines[-40:]}"
            time.sleep(0.5)
        detected = [line for line in lines if "all 8 cameras detected" in line]
        assert detected, lines[-40:]
        assert "on 2 nodes" in detected[0]
        assert any("serving on http://127.0.0.1:8000" in line for line in lines)
        process.send_signal(signal.SIGINT)
        assert process.wait(60) in (0, 130)
        assert not _demo_processes(), "Ray processes of the demo remain"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def _demo_processes() -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "sd-demo-" in command:
            found.append(command.replace("\0", " ")[:200])
    return found
