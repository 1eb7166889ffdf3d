"""The single-process path imports no Ray and runs where Ray is not installed; only the engine imports it."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from websockets.sync.client import connect

import stream_detect
from tests.processes import serving_command

PACKAGE = Path(stream_detect.__file__).parent
NO_RAY = "import sys\nsys.modules['ray'] = None\n"  # `import ray` then fails as if it were not installed


def _without_ray(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "no-ray"
    site.mkdir()
    (site / "sitecustomize.py").write_text(NO_RAY)
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)}


def test_only_the_engine_imports_ray() -> None:
    importers = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            if any(name == "ray" or name.startswith("ray.") for name in names):
                importers.append(path.relative_to(PACKAGE).as_posix())
    assert sorted(set(importers)) == ["cluster/ray_engine.py"]


def test_the_package_imports_and_runs_without_ray(tmp_path: Path, tiny_detr_dir: Path) -> None:
    env = _without_ray(tmp_path)
    probe = subprocess.run(
        [sys.executable, "-c", "import stream_detect.cli, stream_detect.compose, stream_detect.cluster.head, "
         "stream_detect.cluster.agent, stream_detect.cluster.run, stream_detect.cluster.local, sys; "
         "print(sorted(name for name in sys.modules if name == 'ray' and sys.modules[name] is not None))"],
        capture_output=True, text=True, timeout=120, env={**os.environ, **env}, check=False)
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert probe.stdout.strip() == "[]"
    with serving_command("run", "--port", "0", "--model", str(tiny_detr_dir), "--device", "cpu", "--threshold",
                         "0.01", "--source", "lavfi:testsrc2=size=160x120:rate=5", "--data-dir", str(tmp_path / "d"),
                         env=env) as served:
        deadline = time.monotonic() + 90
        with connect(served.base.replace("http://", "ws://") + "/ws?types=detections", open_timeout=10) as ws:
            message = json.loads(ws.recv(timeout=max(1.0, deadline - time.monotonic())))
        assert message["type"] == "detections" and message["stream"] == "cam1"
        streams = httpx.get(f"{served.base}/streams", timeout=5).json()["streams"]
        assert "node" not in streams[0]  # one process: no cluster node
        assert httpx.get(f"{served.base}/cluster", timeout=5).status_code == 404


def test_cluster_without_ray_is_one_clear_error(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "stream_detect", "run", "--cluster", "127.0.0.1:6390",
                           "--source", "lavfi:testsrc2", "--data-dir", str(tmp_path / "d")],
                          capture_output=True, text=True, timeout=120, env={**os.environ, **_without_ray(tmp_path)},
                          check=False)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'stream-detect[ray]'" in lines[0], done.stderr
