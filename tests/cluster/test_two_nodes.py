"""A real two-node Ray cluster on this machine (inside a loopback-only network namespace): 4 lavfi cameras,
the single-process messages and answers, both nodes used, batches shared, a node and a replica killed.

One scenario (``scenario.py``) runs every step, since a cluster takes ~20 s to start; each check here
names what it found.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from stream_detect.cluster.local import loopback_only

ROOT = Path(__file__).resolve().parents[2]
CAMERAS = ("cam1", "cam2", "cam3", "cam4")

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                                reason="a loopback-only network namespace needs root and unshare")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    directory = tmp_path_factory.mktemp("cluster")
    done = subprocess.run(loopback_only([sys.executable, "-m", "tests.cluster.scenario", str(directory)]),
                          cwd=ROOT, capture_output=True, text=True, timeout=420, check=False)
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0 and lines, f"the scenario failed ({done.returncode}): {done.stderr[-4000:]}"
    found: dict[str, Any] = json.loads(lines[-1])
    return found


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_messages_and_answers_are_the_single_process_ones(report: dict[str, Any]) -> None:
    first = report["first"]
    assert all(count >= 5 for count in first["messages"].values()), first["messages"]
    assert first["keys"] == sorted(["type", "version", "stream", "frame", "pts", "captured_at", "emitted_at",
                                    "width", "height", "model", "detections"])
    assert first["models"] == ["fake-detr"]
    assert first["with_detections"] >= first["compared"] // 2, "too few frames with detections to compare"
    assert first["mismatches"] == [], first["mismatches"]
    assert first["api_status"] == 200
    assert first["api_answer"] == first["api_expected"] and first["api_answer"], first["api_answer"]
    assert first["states"] == dict.fromkeys(CAMERAS, "running")


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_the_cameras_use_both_nodes_and_share_batches(report: dict[str, Any]) -> None:
    first = report["first"]
    assert len(set(first["nodes"].values())) == 2, first["nodes"]
    nodes = first["cluster"]["nodes"]
    assert sorted(len(node["cameras"]) for node in nodes) == [2, 2], nodes
    replicas = [replica for node in nodes for replica in node["replicas"]]
    assert len(replicas) == 1, replicas  # replicas: 1, so the 4 cameras of both nodes share it
    assert replicas[0]["mean_batch"] >= 2, replicas


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_tracked_cameras_events_reach_the_history(report: dict[str, Any]) -> None:
    first = report["first"]
    assert first["tracked"] > 0
    assert first["event_messages"] > 0
    kinds = {event["kind"] for event in first["events"]["events"]}
    assert "object.start" in kinds, first["events"]


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_an_objects_snapshot_and_clip_come_from_its_node(report: dict[str, Any]) -> None:
    assert report["media"]["snapshot"] and report["media"]["clip"], report["media"]


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_the_preview_and_hls_come_from_the_cameras_node(report: dict[str, Any]) -> None:
    first = report["first"]
    assert first["preview"] is True
    assert first["hls"] == {"playlist": 200, "segment": True, "absent": 404}, first["hls"]


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_a_killed_worker_node_moves_its_cameras(report: dict[str, Any]) -> None:
    assert report["killed_processes"] >= 2
    assert report["node_kill_resumed_s"] is not None and report["node_kill_resumed_s"] <= 30, report
    assert max(report["node_kill_gaps_s"].values()) <= 30, report["node_kill_gaps_s"]
    assert len(set(report["nodes_after_kill"].values())) == 1, report["nodes_after_kill"]
    moved = {stream for stream, state, _ in report["node_kill_statuses"] if state == "reconnecting"}
    assert moved and len(moved) < 4, report["node_kill_statuses"]


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_a_killed_replica_is_replaced_and_no_camera_ends(report: dict[str, Any]) -> None:
    assert report["replicas_before"] and report["replicas_after"]
    assert set(report["replicas_before"]).isdisjoint(report["replicas_after"]), report
    assert report["replica_kill_resumed_s"] is not None and report["replica_kill_resumed_s"] <= 30, report
    assert report["ended"] == [], report["ended"]


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_a_node_that_joins_takes_new_cameras_and_a_rebalance_spreads_them(report: dict[str, Any]) -> None:
    assert report["join_agent_s"] is not None, report
    assert report["added_status"] == 201 and report["cam5_on_new_node"], report
    assert report["rebalance_status"] == 200 and len(report["rebalance_moved"]) == 1, report["rebalance_moved"]
    assert report["cameras_per_node"] == [2, 3], report["cameras_per_node"]
    assert report["rebalance_resumed_s"] is not None and report["rebalance_resumed_s"] <= 30, report
    assert report["exit_code"] in (0, 15, -15), report["stderr_tail"]  # SIGTERM: a clean stop
