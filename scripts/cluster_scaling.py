"""Frames per second through ``stream-detect run --cluster`` with 1, 2 and 4 local Ray nodes.

Each node gets the same cameras (lavfi, a red square crossing grey) and one
detector replica of a fake of fixed cost (``--cost-ms`` per batch, at most
``--batch`` frames), so the detector caps each replica at batch / cost frames
per second whatever this machine's cores: the curve shows what the system
(capture, Serve's batching, the relay to the started process, its websocket
hub) does with more nodes. Counted: the detections messages a websocket
client receives over ``--seconds``, after a warm-up.

Ray listens on every interface and dials the machine's own address, so run it
where only loopback is up (as root)::

    unshare --net sh -c 'ip link set lo up && exec .venv/bin/python scripts/cluster_scaling.py'

It prints a table and one JSON line per node count (``--json FILE`` keeps them).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from websockets.sync.client import connect

GRAPH = ("color=c=gray:size=160x120:rate={fps}[bg];color=c=red:size=30x30:rate={fps}[fg];"
         "[bg][fg]overlay=x=mod(n*4\\,130):y=45")


def serve(config_path: str, cost_ms: float) -> int:
    """The analyzer, its replicas loading the fixed-cost fake (this script run with --serve)."""
    from stream_detect.cluster.run import run_cluster
    from stream_detect.config import load_config
    from stream_detect.detect.fake import fixed_cost_detector
    from stream_detect.logs import setup_logging

    setup_logging("WARNING")
    return run_cluster(load_config(config_path),
                       load=functools.partial(fixed_cost_detector, delay_s=cost_ms / 1000, model_id="fixed-cost"))


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(nodes: int, args: argparse.Namespace) -> dict[str, Any]:
    from stream_detect.cluster.local import LocalCluster

    directory = Path(tempfile.mkdtemp(prefix="sd-scale-"))
    cluster = LocalCluster(directory / "r", nodes=nodes, cpus=2)
    result: dict[str, Any] = {"nodes": nodes}
    process = None
    try:
        started = time.monotonic()
        cluster.start()
        result["cluster_start_s"] = round(time.monotonic() - started, 1)
        cameras = nodes * args.cameras
        config = {
            "model": {"id": "example/fixed-cost", "threshold": 0.3},
            "cluster": {"address": cluster.address, "max_batch_size": args.batch, "batch_wait_ms": 20},
            "server": {"host": "127.0.0.1", "port": 0},
            "data_dir": str(directory / "data"),
            "events": {"enabled": False},
            "sources": [{"id": f"cam{i + 1}", "kind": "lavfi", "graph": GRAPH.format(fps=args.fps),
                         "motion": {"enabled": False}} for i in range(cameras)],
        }
        path = directory / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        process = subprocess.Popen([sys.executable, __file__, "--serve", str(path), str(args.cost_ms)],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert process.stdout is not None
        line = process.stdout.readline()
        if "serving on" not in line:
            raise RuntimeError(f"the analyzer did not start: {line!r}")
        base = line.strip().rsplit(" ", 1)[1]
        counted: list[float] = []
        stop = threading.Event()

        def listen() -> None:
            with connect(base.replace("http://", "ws://") + "/ws?types=detections", open_timeout=30) as ws:
                while not stop.is_set():
                    try:
                        ws.recv(timeout=0.5)
                    except TimeoutError:
                        continue
                    counted.append(time.monotonic())

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not counted:
            time.sleep(0.5)
        time.sleep(args.warmup)
        window_start, cpu_start = time.monotonic(), _cpu_seconds(process.pid)
        load_start = os.getloadavg()[0]
        time.sleep(args.seconds)
        window_end, cpu_end = time.monotonic(), _cpu_seconds(process.pid)
        stop.set()
        listener.join(5)
        frames = sum(1 for at in counted if window_start <= at < window_end)
        import urllib.request

        with urllib.request.urlopen(f"{base}/cluster", timeout=10) as answer:
            described = json.load(answer)
        replicas = [replica for node in described["nodes"] for replica in node["replicas"]]
        result.update({
            "cameras": cameras,
            "offered_fps": cameras * args.fps,
            "detector_cap_fps": round(nodes * args.batch / (args.cost_ms / 1000), 1),
            "fps": round(frames / (window_end - window_start), 1),
            "mean_batch": round(sum(r["frames"] for r in replicas) / max(1, sum(r["batches"] for r in replicas)), 2),
            "replicas": len(replicas),
            "cameras_per_node": sorted(len(node["cameras"]) for node in described["nodes"]),
            "head_cpu_per_s": round((cpu_end - cpu_start) / (window_end - window_start), 2),
            "load_1min": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        })
        return result
    finally:
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        return serve(sys.argv[2], float(sys.argv[3]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="1,2,4", help="node counts (default: 1,2,4)")
    parser.add_argument("--cameras", type=int, default=4, help="cameras per node (default: 4)")
    parser.add_argument("--fps", type=int, default=5, help="frames per second of each camera (default: 5)")
    parser.add_argument("--cost-ms", type=float, default=200.0, help="the fake's cost per batch (default: 200)")
    parser.add_argument("--batch", type=int, default=4, help="a replica's largest batch (default: 4)")
    parser.add_argument("--seconds", type=float, default=20.0, help="counting window (default: 20)")
    parser.add_argument("--warmup", type=float, default=8.0, help="seconds after the first message (default: 8)")
    parser.add_argument("--json", type=Path, help="also write the results here (JSON lines)")
    args = parser.parse_args()
    rows = []
    for nodes in (int(n) for n in args.nodes.split(",")):
        row = measure(nodes, args)
        rows.append(row)
        print(json.dumps(row), flush=True)
    base = rows[0]["fps"] or 1.0
    print(f"\n{'nodes':>5} {'cameras':>7} {'offered':>8} {'cap':>6} {'fps':>6} {'x1 node':>7} {'batch':>5} "
          f"{'head cpu':>8}")
    for row in rows:
        print(f"{row['nodes']:>5} {row['cameras']:>7} {row['offered_fps']:>8} {row['detector_cap_fps']:>6} "
              f"{row['fps']:>6} {row['fps'] / base:>7.2f} {row['mean_batch']:>5} {row['head_cpu_per_s']:>8}")
    if args.json is not None:
        args.json.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
