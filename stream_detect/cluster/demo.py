"""``scripts/cluster-demo``: a two-node Ray cluster on this machine, 8 synthetic cameras over it, the dashboard.

A head node and a worker node (each ``ray start`` with its own temporary
directory, :class:`~.local.LocalCluster`), the bundled demo model as one
detector replica per node, and ``stream-detect run --cluster`` serving the
dashboard on http://127.0.0.1:8000 (``--port``). It says when every camera has
its first detections, and stops the cluster on Ctrl-C. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from ..config import parse_config
from ..errors import StreamDetectError
from ..logs import setup_logging
from .local import LocalCluster

CAMERAS = 8


def demo_sources(count: int = CAMERAS) -> list[dict[str, object]]:
    """``count`` synthetic cameras (each its own seed), each with a zone and a line like ``stream-detect demo``'s."""
    return [{"id": f"cam{i + 1}", "kind": "synthetic", "seed": i + 1, "width": 480, "height": 270, "fps": 5,
             "zones": [{"name": "right", "polygon": [[0.65, 0], [1, 0], [1, 1], [0.65, 1]]}],
             "lines": [{"name": "middle", "points": [[0.5, 0], [0.5, 1]]}]} for i in range(count)]


def _announce_when_detected(base: str, started: float, cluster_s: float, stop: threading.Event) -> None:
    """Prints once every camera has processed a frame (bounded: gives up after 5 minutes)."""
    deadline = time.monotonic() + 300
    while not stop.wait(0.5) and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/streams", timeout=5) as answer:
                streams = json.load(answer)["streams"]
        except OSError:
            continue
        if len(streams) == CAMERAS and all(stream["frames_processed"] > 0 for stream in streams):
            nodes = len({stream.get("node") for stream in streams})
            print(f"cluster-demo: all {CAMERAS} cameras detected on {nodes} nodes, {time.monotonic() - started:.1f} s "
                  f"after the start (the cluster took {cluster_s:.1f} s); the dashboard is at {base}/", flush=True)
            return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cluster-demo", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000, help="dashboard port (default: 8000)")
    parser.add_argument("--ray-port", type=int, default=6390, help="the head node's GCS port (default: 6390)")
    args = parser.parse_args(argv)
    setup_logging("INFO")
    started = time.monotonic()
    directory = Path(tempfile.mkdtemp(prefix="sd-demo-"))  # short: Ray's socket paths must fit
    cluster = LocalCluster(directory / "ray", nodes=2, cpus=2, port=args.ray_port)
    stop = threading.Event()
    try:
        print("cluster-demo: starting a head node and a worker node", flush=True)
        cluster.start()
        cluster_s = time.monotonic() - started
        config = parse_config({
            "model": {"id": "demo", "threshold": 0.5},
            "cluster": {"address": cluster.address},
            "server": {"host": "127.0.0.1", "port": args.port},
            "data_dir": str(directory / "data"),
            "sources": demo_sources(),
        }, origin="cluster-demo")
        base = f"http://127.0.0.1:{args.port}"
        threading.Thread(target=_announce_when_detected, args=(base, started, cluster_s, stop), daemon=True).start()
        from .run import run_cluster

        return run_cluster(config)
    except StreamDetectError as error:
        print(f"cluster-demo: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        stop.set()
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
