"""A running analyzer's events reach every output: the websocket's history, a real MQTT broker with Home
Assistant discovery, and a real webhook receiver that checks the signatures."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest

from ..processes import serving_command
from .mosquitto import running_broker, subscriber
from .webhook_receiver import receiving, wait_until

FAKE_RUN = "tests.faults.fake_run"  # stream-detect as users run it, with the fake detector

SECRET = "whsec_" + base64.b64encode(b"end-to-end secret of 32 bytes!!!").decode()
WAIT_S = 60  # generous: only a hang fails


@pytest.mark.timeout(180)
def test_one_event_everywhere_with_the_same_id(tmp_path: Path) -> None:
    with running_broker() as broker, \
            subscriber(broker.port, "stream-detect/#", "homeassistant/#") as listener, \
            receiving(SECRET, tmp_path / "received.jsonl") as receiver:
        config = tmp_path / "config.yaml"
        config.write_text(
            "model: {id: fake}\n"
            f"mqtt: {{host: 127.0.0.1, port: {broker.port}}}\n"
            f"webhooks: [{{url: '{receiver.url}', secret: '{SECRET}', kinds: [object.start]}}]\n"
            "sources:\n"
            "  - {id: yard, kind: synthetic, fps: 10,\n"
            "     zones: [{name: everywhere, polygon: [[0, 0], [1, 0], [1, 1], [0, 1]]}]}\n")
        with serving_command("run", "--port", "0", "--config", str(config), "--data-dir",
                             str(tmp_path / "data"), module=FAKE_RUN) as served:
            wait_until(lambda: bool(receiver.accepted()), WAIT_S, "a signed webhook delivery")
            delivered = receiver.accepted()[0]
            wait_until(lambda: bool(listener.received("stream-detect/events")), WAIT_S, "an event on MQTT")
            on_mqtt = [json.loads(m.payload) for m in listener.received("stream-detect/events")]
            assert delivered["event_id"] in {event["id"] for event in on_mqtt}
            wait_until(lambda: httpx.get(f"{served.base}/events/{delivered['event_id']}", timeout=10).status_code
                       == 200, 10, "the event in the history")
            kept = httpx.get(f"{served.base}/events/{delivered['event_id']}", timeout=10).json()
            assert kept["kind"] == "object.start" and kept["stream"] == "yard"
            assert listener.last("stream-detect/available") == b"online"
            wait_until(lambda: bool(listener.received("stream-detect/yard/everywhere/object")), WAIT_S,
                       "the zone's count on MQTT")
            with subscriber(broker.port, "stream-detect/yard/#", client_id="late-subscriber") as late:
                wait_until(lambda: bool(late.received("stream-detect/yard/everywhere/object")), 10,
                           "the zone's count, retained, for a late subscriber")
                assert late.received("stream-detect/yard/everywhere/object")[0].retain
            discovery = [m for m in listener.received() if m.topic.startswith("homeassistant/") and m.payload]
            assert discovery and all(json.loads(m.payload)["unique_id"] for m in discovery)
            deliveries = httpx.get(f"{served.base}/webhooks/deliveries?status=delivered", timeout=10).json()
            assert delivered["event_id"] in {d["event_id"] for d in deliveries["deliveries"]}
            metrics = httpx.get(f"{served.base}/metrics", timeout=10).text
            assert "stream_detect_mqtt_connected 1.0" in metrics
        wait_until(lambda: listener.last("stream-detect/available") == b"offline", 10, "offline after a stop")
