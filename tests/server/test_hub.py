"""The hub's per-client queues and the token check, without a network."""

from __future__ import annotations

import asyncio

from stream_detect.server.auth import TokenCheck, presented_token
from stream_detect.server.hub import Hub


def test_slow_client_loses_only_its_own_oldest_messages() -> None:
    async def scenario() -> tuple[list[str], list[str], int]:
        drops: list[int] = []
        hub = Hub(client_queue_size=3, on_drop=drops.append)
        hub.bind(asyncio.get_running_loop())
        slow = hub.subscribe(None)
        fast = hub.subscribe(frozenset({"a"}))
        received: list[str] = []
        for i in range(10):
            hub.publish({"type": "detections", "stream": "a", "frame": i})
            hub.publish({"type": "detections", "stream": "b", "frame": i})
            await asyncio.sleep(0)
            while fast.messages:
                received.append(await fast.next_message())
        slow_left = [await slow.next_message() for _ in range(len(slow.messages))]
        return received, slow_left, sum(drops)

    fast_got, slow_left, dropped = asyncio.run(scenario())
    assert [int(m.split('"frame":')[1].rstrip("}")) for m in fast_got] == list(range(10))
    assert all('"stream":"a"' in m for m in fast_got)
    assert len(slow_left) == 3 and '"frame":9' in slow_left[-1]
    assert dropped == 17


def test_publish_without_loop_or_clients_is_a_no_op() -> None:
    hub = Hub(client_queue_size=2)
    hub.publish({"stream": "a"})  # not bound: nothing happens, nothing raises


def test_token_check() -> None:
    check = TokenCheck(["alpha-token", "beta-token"])
    assert check.enabled
    assert check.allows({"authorization": "Bearer beta-token"}, {})
    assert check.allows({}, {"token": "alpha-token"})
    assert check.allows({"sec-websocket-protocol": "stream-detect.v1, bearer.alpha-token"}, {})
    assert not check.allows({"authorization": "Bearer alpha"}, {})
    assert not check.allows({}, {})
    assert TokenCheck([]).allows({}, {})
    assert presented_token({"authorization": "Basic xyz"}, {}) is None
