"""Where the started process puts cameras, and what it does when nodes come and go (an engine of plain objects:
the real one is tested on a real cluster in test_two_nodes.py)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from stream_detect.cluster.head import ClusterHead
from stream_detect.cluster.relay import Drained
from stream_detect.config import Config, parse_config
from stream_detect.errors import UnknownStreamError
from stream_detect.sinks import FrameResult, Notice
from stream_detect.sources.capture import StateChange


class Lost(Exception):
    pass


class _Answer:
    def __init__(self, value: Any) -> None:
        self._value = value

    def result(self, timeout_s: float | None = None) -> Any:
        return self._value


class _Method:
    def __init__(self, value: Any) -> None:
        self._value = value

    def remote(self, *args: Any) -> _Answer:
        return _Answer(self._value)


class Handle:
    describe = _Method({"model_id": "fake", "labels": {0: "object"}})


@dataclass
class Agent:
    node: str
    streams: list[str] = field(default_factory=list)
    dead: bool = False

    def ping(self) -> str:
        return self.node

    def add(self, source: Any) -> None:
        self.streams.append(source.id)

    def remove(self, stream_id: str) -> None:
        self.streams.remove(stream_id)

    def drain(self, after: int, timeout_s: float) -> tuple[Drained, list[Any], dict[str, Any]]:
        time.sleep(min(timeout_s, 0.05))
        return Drained((), 0), [], {}

    def stop(self) -> bool:
        return True


@dataclass(frozen=True)
class Node:
    id: str
    address: str = "127.0.0.1"
    alive: bool = True
    resources: dict[str, float] = field(default_factory=lambda: {"CPU": 2.0})


class Engine:
    def __init__(self, nodes: list[str]) -> None:
        self.node_ids = list(nodes)
        self.agents: dict[str, Agent] = {}
        self.lock = threading.Lock()

    def alive_nodes(self) -> list[Node]:
        return [Node(node) for node in self.node_ids]

    nodes = alive_nodes

    def follow_nodes(self) -> None:
        pass

    def handle(self, model: str) -> Handle:
        return Handle()

    def start_agent(self, node: str, config: Config) -> Agent:
        agent = self.agents[node] = Agent(node)
        return agent

    def call(self, actor: Agent, method: str, *args: Any, timeout_s: float = 30.0) -> Any:
        if actor.dead:
            raise Lost(f"the agent of {actor.node} died")
        return getattr(actor, method)(*args)

    def kill(self, actor: Agent) -> None:
        actor.dead = True


class Heard:
    name = "heard"

    def __init__(self) -> None:
        self.statuses: list[StateChange] = []

    def on_result(self, result: FrameResult) -> None:
        pass

    def on_status(self, change: StateChange) -> None:
        self.statuses.append(change)

    def on_event(self, notice: Notice) -> None:
        pass

    def close(self) -> None:
        pass


def config(cameras: int) -> Config:
    return parse_config({"cluster": {"address": "auto", "poll_s": 0.05},
                         "sources": [{"id": f"cam{i + 1}", "kind": "lavfi", "graph": "testsrc"}
                                     for i in range(cameras)]})


def counts(head: ClusterHead) -> list[int]:
    return sorted(len(node["cameras"]) for node in head.describe()["nodes"] if node["agent"])


def wait(check: Any, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def started() -> Any:
    heads: list[ClusterHead] = []

    def start(cameras: int, nodes: list[str]) -> tuple[ClusterHead, Engine, Heard]:
        engine = Engine(nodes)
        head = ClusterHead(config(cameras), engine, Lost)
        heard = Heard()
        head.dispatcher.add(heard, maxsize=64)
        head.start()
        heads.append(head)
        return head, engine, heard

    yield start
    for head in heads:
        head.stop(timeout=5)


def test_cameras_go_to_the_nodes_with_the_fewest(started: Any) -> None:
    head, engine, _ = started(7, ["a", "b", "c"])
    assert counts(head) == [2, 2, 3]
    assert sorted(stream for agent in engine.agents.values() for stream in agent.streams) == sorted(head.ids())
    described = {snapshot.id: snapshot.describe() for snapshot in head.all()}
    assert {entry["node"] for entry in described.values()} == {"a", "b", "c"}


def test_a_lost_agents_cameras_move_to_the_others_and_are_told(started: Any) -> None:
    head, engine, heard = started(4, ["a", "b"])
    moved = list(engine.agents["b"].streams)
    engine.agents["b"].dead = True  # its next poll fails
    engine.node_ids.remove("b")
    assert wait(lambda: counts(head) == [4])
    assert sorted(engine.agents["a"].streams) == sorted(head.ids())
    assert wait(lambda: {c.stream_id for c in heard.statuses if c.state.value == "reconnecting"} == set(moved))


def test_a_node_that_joins_takes_the_next_camera_and_a_rebalance_spreads_them(started: Any) -> None:
    head, engine, _ = started(4, ["a"])
    engine.node_ids.append("b")
    assert wait(lambda: len([n for n in head.describe()["nodes"] if n["agent"]]) == 2)
    head.add_stream(parse_config({"sources": [{"id": "cam5", "kind": "lavfi", "graph": "testsrc"}]}).sources[0])
    assert engine.agents["b"].streams == ["cam5"]
    moved = head.rebalance()
    assert len(moved) == 1 and moved[0]["from"] == "a" and moved[0]["to"] == "b"
    assert counts(head) == [2, 3]
    assert head.rebalance() == []  # balanced: nothing moves


def test_cameras_wait_for_a_node_and_are_placed_when_one_comes(started: Any) -> None:
    head, engine, _ = started(2, [])
    assert head.describe()["waiting"] == ["cam1", "cam2"]
    assert {snapshot.state.value for snapshot in head.all()} == {"connecting"}
    engine.node_ids.append("a")
    assert wait(lambda: counts(head) == [2])
    assert head.describe()["waiting"] == []


def test_removing_a_camera_stops_it_on_its_node_and_says_stopped(started: Any) -> None:
    head, engine, heard = started(2, ["a"])
    head.remove_stream("cam1")
    assert engine.agents["a"].streams == ["cam2"]
    assert head.ids() == ("cam2",)
    assert wait(lambda: any(c.stream_id == "cam1" and c.state.value == "stopped" for c in heard.statuses))
    with pytest.raises(UnknownStreamError):
        head.remove_stream("cam1")
