"""A two-node Ray cluster on this machine, 4 lavfi cameras over it, a worker node and a replica killed.

Run inside a network namespace that has only loopback (``test_two_nodes.py``
does, with :func:`stream_detect.cluster.local.loopback_only`), so no traffic
leaves 127.0.0.1: ``python -m tests.cluster.scenario DIR``. It prints one JSON
report line, the test checks it. Every wait is bounded.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import yaml
from PIL import Image
from websockets.sync.client import connect

from stream_detect.cluster.local import LocalCluster
from stream_detect.detect.fake import FakeDetector
from stream_detect.serialize import to_hf_elements
from tests.processes import serving_command

CAMERAS = ("cam1", "cam2", "cam3", "cam4")
# A red square crossing a grey frame: the fake detector finds it, the tracker follows it.
GRAPH = ("color=c=gray:size=320x240:rate=5[bg];color=c=red:size=60x60:rate=5[fg];"
         "[bg][fg]overlay=x=mod(n*8\\,260):y=90")
THRESHOLD = 0.3
DELAY_MS = 60


class Listener:
    """Every websocket message, with when it came, on a thread of its own."""

    def __init__(self, base: str) -> None:
        self.messages: list[tuple[float, dict[str, Any]]] = []
        self._url = base.replace("http://", "ws://") + "/ws"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with connect(self._url, open_timeout=10) as ws:
            while not self._stop.is_set():
                try:
                    text = ws.recv(timeout=0.5)
                except TimeoutError:
                    continue
                self.messages.append((time.monotonic(), json.loads(text)))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def detections(self, since: float = 0.0) -> list[tuple[float, dict[str, Any]]]:
        return [(at, m) for at, m in list(self.messages) if m["type"] == "detections" and at >= since]

    def statuses(self, since: float = 0.0) -> list[dict[str, Any]]:
        return [m for at, m in list(self.messages) if m["type"] == "status" and at >= since]


def wait_for(check: Any, timeout_s: float, step_s: float = 0.25) -> float | None:
    """Seconds until ``check()`` held, or None after ``timeout_s``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            if check():
                return time.monotonic() - started
        except httpx.TransportError:  # the server is still starting
            pass
        time.sleep(step_s)
    return None


def lavfi_frames(count: int) -> list[np.ndarray]:
    with av.open(GRAPH, format="lavfi") as container:
        frames = []
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) >= count:
                break
    return frames


def longest_gaps(listener: Listener, since: float, until: float) -> dict[str, float]:
    """Each camera's longest wait between two detections messages in ``[since, until]`` (from ``since``)."""
    gaps = {}
    for camera in CAMERAS:
        times = [since] + [at for at, m in listener.detections(since) if m["stream"] == camera and at <= until]
        times.append(until)
        gaps[camera] = round(max(b - a for a, b in itertools.pairwise(times)), 2)
    return gaps


def main(directory: Path) -> dict[str, Any]:
    report: dict[str, Any] = {}
    # Short: Ray's socket paths under it must fit in 107 bytes.
    cluster = LocalCluster(Path(tempfile.mkdtemp(prefix="sd-ray-")), nodes=2, cpus=2)
    started = time.monotonic()
    try:
        cluster.start()
        report["cluster_start_s"] = round(time.monotonic() - started, 1)
        config = {
            "model": {"id": "example/fake-detector", "threshold": THRESHOLD},
            "cluster": {"address": cluster.address, "replicas": 1, "poll_s": 0.25, "batch_wait_ms": 50},
            "data_dir": str(directory / "data"),
            "server": {"host": "127.0.0.1", "port": 0},
            "sources": [
                {"id": camera, "kind": "lavfi", "graph": GRAPH, "motion": {"enabled": False},
                 **({"tracking": True, "tracker": {"activation_threshold": 0.3, "high_confidence_threshold": 0.4},
                     "zones": [{"name": "yard", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}]}
                    if camera == "cam1" else {}),
                 **({"restream": {"hls": True}} if camera == "cam2" else {})}
                for camera in CAMERAS
            ],
        }
        path = directory / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        with serving_command(str(path), str(DELAY_MS), module="tests.cluster.fake_analyzer",
                             env={"PYTHONPATH": os.getcwd()}) as served:
            base = served.base
            report["first"] = _first_phase(base, report)
            report["stderr_tail"] = served.stderr[-3000:]
            listener = Listener(base)
            try:
                _failures(base, cluster, listener, report)
            finally:
                listener.stop()
            report["exit_code"] = None
        report["exit_code"] = served.process.returncode
        report["stderr_tail"] = served.stderr[-3000:]
    finally:
        cluster.stop()
        shutil.rmtree(cluster.directory, ignore_errors=True)
    return report


def _first_phase(base: str, report: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    ready = wait_for(lambda: httpx.get(f"{base}/healthz", timeout=5).status_code == 200, 120)
    found["ready_s"] = ready
    listener = Listener(base)
    try:
        per_camera = lambda: {m["stream"] for _, m in listener.detections()}  # noqa: E731
        found["all_cameras_s"] = wait_for(lambda: per_camera() >= set(CAMERAS), 60)
        time.sleep(6)  # several batches
    finally:
        listener.stop()
    messages = [m for _, m in listener.detections()]
    if not messages:
        raise RuntimeError("no detections message came")
    found["messages"] = {camera: sum(1 for m in messages if m["stream"] == camera) for camera in CAMERAS}
    found["keys"] = sorted({key for m in messages for key in m})
    found["with_detections"] = sum(1 for m in messages if m["detections"])
    found["tracked"] = sum(1 for m in messages if any("track_id" in e for e in m["detections"]))
    found["event_messages"] = sum(1 for _, m in list(listener.messages) if m["type"] == "event")
    found["models"] = sorted({m["model"] for m in messages})
    # The same frames through the same detector in this process: the cluster's answers must be these.
    frames = lavfi_frames(max(m["frame"] for m in messages) + 1)
    local = FakeDetector(model_id="fake-detr")
    mismatches = []
    for message in messages:
        expected = to_hf_elements(local.detect([frames[message["frame"]]], THRESHOLD)[0])
        got = [{key: value for key, value in element.items() if key != "track_id"} for element in message["detections"]]
        if got != expected:
            mismatches.append({"frame": message["frame"], "stream": message["stream"], "got": got,
                               "expected": expected})
    found["compared"] = len(messages)
    found["mismatches"] = mismatches[:3]
    buffer = io.BytesIO()
    Image.fromarray(frames[3]).save(buffer, format="PNG")
    answer = httpx.post(f"{base}/models/default", content=buffer.getvalue(),
                        headers={"Content-Type": "image/png"}, timeout=30)
    found["api_status"] = answer.status_code
    found["api_answer"] = answer.json()
    found["api_expected"] = to_hf_elements(local.detect([frames[3]], THRESHOLD)[0])
    streams = httpx.get(f"{base}/streams", timeout=10).json()["streams"]
    found["nodes"] = {stream["id"]: stream.get("node") for stream in streams}
    found["states"] = {stream["id"]: stream["state"] for stream in streams}
    found["cluster"] = httpx.get(f"{base}/cluster", timeout=10).json()
    found["events"] = httpx.get(f"{base}/events", params={"stream": "cam1"}, timeout=10).json()
    preview = httpx.get(f"{base}/streams/cam3/snapshot.jpg", timeout=30)
    found["preview"] = preview.status_code == 200 and preview.content[:3] == b"\xff\xd8\xff"
    found["hls"] = _hls(base)
    return found


def _hls(base: str) -> dict[str, Any]:
    """cam2's HLS, segmented on its node, through the started process; cam3 has none."""
    found: dict[str, Any] = {"playlist": None, "segment": False}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and found["playlist"] != 200:
        found["playlist"] = httpx.get(f"{base}/streams/cam2/hls/index.m3u8", timeout=10).status_code
        time.sleep(0.5)
    if found["playlist"] == 200:
        text = httpx.get(f"{base}/streams/cam2/hls/index.m3u8", timeout=10).text
        names = [line for line in text.splitlines() if line and not line.startswith("#")]
        if names:
            segment = httpx.get(f"{base}/streams/cam2/hls/{names[-1].split('?')[0]}", timeout=10)
            found["segment"] = segment.status_code == 200 and segment.content[:1] == b"\x47"  # MPEG-TS sync
    found["absent"] = httpx.get(f"{base}/streams/cam3/hls/index.m3u8", timeout=10).status_code
    return found


def _failures(base: str, cluster: LocalCluster, listener: Listener, report: dict[str, Any]) -> None:
    time.sleep(2)
    # The worker node dies as a machine would.
    killed_at = time.monotonic()
    report["killed_processes"] = cluster.kill_node(1)
    resumed = wait_for(lambda: _all_since(listener, killed_at + 1, gap_s=3.0), 60, 0.5)
    report["node_kill_resumed_s"] = resumed
    time.sleep(3)
    report["node_kill_gaps_s"] = longest_gaps(listener, killed_at, time.monotonic())
    report["node_kill_statuses"] = [(m["stream"], m["state"], m.get("detail")) for m in listener.statuses(killed_at)]
    report["after_node_kill"] = httpx.get(f"{base}/cluster", timeout=10).json()
    streams = httpx.get(f"{base}/streams", timeout=10).json()["streams"]
    report["nodes_after_kill"] = {stream["id"]: stream.get("node") for stream in streams}
    # A detector replica dies: Serve starts another, no camera ends.
    import ray

    ray.init(address=cluster.address, namespace="stream-detect", log_to_driver=False)
    try:
        replicas = [entry for entry in ray.util.list_named_actors(all_namespaces=True)
                    if "SERVE_REPLICA" in entry["name"]]
        report["replicas_before"] = [entry["name"] for entry in replicas]
        replica_killed_at = time.monotonic()
        for entry in replicas:
            ray.kill(ray.get_actor(entry["name"], namespace=entry["namespace"]), no_restart=True)
        report["replica_kill_resumed_s"] = wait_for(
            lambda: _all_since(listener, replica_killed_at + 1, gap_s=3.0), 60, 0.5)
        time.sleep(2)
        report["replica_kill_gaps_s"] = longest_gaps(listener, replica_killed_at, time.monotonic())
        report["replicas_after"] = [entry["name"] for entry in ray.util.list_named_actors(all_namespaces=True)
                                    if "SERVE_REPLICA" in entry["name"]]
    finally:
        ray.shutdown()
    report["ended"] = [(m["stream"], m["state"]) for m in listener.statuses() if m["state"] in ("ended", "failed")]
    _growing(base, cluster, listener, report)
    report["media"] = _media(base)
    report["last_cluster"] = httpx.get(f"{base}/cluster", timeout=10).json()


def _growing(base: str, cluster: LocalCluster, listener: Listener, report: dict[str, Any]) -> None:
    """A node joins: it takes the next camera, and a rebalance spreads the others."""
    cluster.start_node(2)

    def agents() -> list[str]:
        return [node["id"] for node in httpx.get(f"{base}/cluster", timeout=10).json()["nodes"] if node["agent"]]

    report["join_agent_s"] = wait_for(lambda: len(agents()) == 2, 60, 0.5)
    added = httpx.post(f"{base}/streams", json={"id": "cam5", "kind": "lavfi", "graph": GRAPH,
                                                "motion": {"enabled": False}}, timeout=60)
    report["added_status"] = added.status_code
    nodes = {s["id"]: s.get("node") for s in httpx.get(f"{base}/streams", timeout=10).json()["streams"]}
    report["cam5_on_new_node"] = nodes.get("cam5") not in {nodes[camera] for camera in CAMERAS}
    rebalanced_at = time.monotonic()
    answer = httpx.post(f"{base}/cluster/rebalance", timeout=120)
    report["rebalance_status"] = answer.status_code
    report["rebalance_moved"] = answer.json().get("moved")
    report["cameras_per_node"] = sorted(len(node["cameras"]) for node in
                                        httpx.get(f"{base}/cluster", timeout=10).json()["nodes"] if node["agent"])
    every = (*CAMERAS, "cam5")
    report["rebalance_resumed_s"] = wait_for(
        lambda: {m["stream"] for at, m in listener.detections(rebalanced_at + 1) if at >= time.monotonic() - 3}
        >= set(every), 60, 0.5)


def _media(base: str) -> dict[str, Any]:
    """A tracked object's snapshot and clip, made on its camera's node, through the started process."""
    found: dict[str, Any] = {"snapshot": None, "clip": None}
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and not (found["snapshot"] and found["clip"]):
        events = httpx.get(f"{base}/events", params={"stream": "cam1", "kind": "object.end"}, timeout=10).json()
        for event in events["events"]:
            snapshot = httpx.get(f"{base}/events/{event['id']}/snapshot.jpg", params={"boxes": "1"}, timeout=30)
            clip = httpx.get(f"{base}/events/{event['id']}/clip.mp4", timeout=30)
            if snapshot.status_code == 200 and clip.status_code == 200:
                found["snapshot"] = snapshot.content[:3] == b"\xff\xd8\xff"
                found["clip"] = clip.content[4:8] == b"ftyp" and len(clip.content) > 1000
                found["event"] = event["id"]
                break
        time.sleep(1)
    return found


def _all_since(listener: Listener, since: float, gap_s: float) -> bool:
    """Every camera has a detections message since ``since``, and one in the last ``gap_s`` seconds."""
    now = time.monotonic()
    recent = {m["stream"] for at, m in listener.detections(since) if at >= now - gap_s}
    return recent >= set(CAMERAS)


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))), flush=True)
