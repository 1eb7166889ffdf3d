"""Webhook deliveries to real receiver processes on 127.0.0.1 that verify every signature with the
``standardwebhooks`` package: filters, a receiver down at first, 503 then 200, 429 with Retry-After,
400 final, redirects not followed, the retry horizon, and a slow receiver beside a fast one.

The retry schedule is shortened here (:data:`SHORT`: 0.3 s doubling to 2 s, jitter half) so that
what takes minutes with the defaults takes seconds; the code paths are the same.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stream_detect.errors import ConfigError
from stream_detect.notify.webhook_config import WebhookConfig
from stream_detect.notify.webhook_retry import RetryPolicy
from stream_detect.notify.webhook_signing import hook_key, webhook_id
from stream_detect.notify.webhooks import WebhookSink
from stream_detect.sinks import Dispatcher, Notice

from ..events.sample import DAY, event
from .webhook_receiver import Receiver, free_port, receiving, wait_until

SECRET = "whsec_" + base64.b64encode(b"stream-detect webhook test secret!").decode()
SHORT = RetryPolicy(first_s=0.3, multiplier=2.0, max_s=2.0, jitter=0.5)


def notice(message: dict[str, Any]) -> Notice:
    return Notice(message["stream"], message)


def hook(url: str, **options: Any) -> WebhookConfig:
    return WebhookConfig(url=url, secret=SECRET, **options)


@contextlib.contextmanager
def sending(data_dir: Path, *hooks: WebhookConfig, **options: Any) -> Iterator[WebhookSink]:
    sink = WebhookSink(list(hooks), data_dir, retry=options.pop("retry", SHORT), **options)
    try:
        yield sink
    finally:
        sink.close()


def by_status(sink: WebhookSink, status: str) -> list[dict[str, Any]]:
    return sink.deliveries(status=status, limit=1000)[0]


@pytest.mark.timeout(60)
def test_matching_events_arrive_signed_once_through_the_dispatcher(tmp_path: Path) -> None:
    with receiving(SECRET, tmp_path / "received.jsonl") as receiver:
        base = f"http://127.0.0.1:{receiver.port}"
        crossings = hook(f"http://user:p%40ss@127.0.0.1:{receiver.port}/crossings?token=t0ps3cret",
                         kinds=["line.cross"])
        cars = hook(f"{base}/cars", labels=["car"], streams=["gate-cam"])
        everything = hook(f"{base}/all")
        sent = [
            event(DAY + 1, "line.cross", stream="gate-cam", label="person"),
            event(DAY + 2, "zone.enter", stream="gate-cam", label="car"),
            event(DAY + 3, "object.start", stream="porch-cam", label="car"),
            event(DAY + 4, "line.cross", stream="gate-cam", label="car"),
        ]
        sink = WebhookSink([crossings, cars, everything], tmp_path, retry=SHORT)
        dispatcher = Dispatcher()
        dispatcher.add(sink)
        dispatcher.start()
        try:
            for message in sent:
                dispatcher.publish_notice(notice(message))
            dispatcher.publish_notice(Notice("gate-cam", {"type": "counts", "version": 1, "stream": "gate-cam",
                                                          "at": DAY + 5, "zones": {}, "lines": {}}))
            wait_until(lambda: len(receiver.requests()) >= 8, 15, "8 deliveries")
            time.sleep(0.5)  # nothing more comes
            stats = sink.stats()
        finally:
            assert dispatcher.close(15)
        requests = receiver.requests()
    expected = {
        "/crossings?token=t0ps3cret": [sent[0]["id"], sent[3]["id"]],
        "/cars": [sent[1]["id"], sent[3]["id"]],
        "/all": [m["id"] for m in sent],
    }
    got: dict[str, list[str]] = {}
    for request in requests:
        got.setdefault(request["path"], []).append(request["event_id"])
    assert {path: sorted(ids) for path, ids in got.items()} == {p: sorted(ids) for p, ids in expected.items()}
    assert all(r["verified"] and r["answered"] == 200 and r["content_type"] == "application/json" for r in requests)
    for request in requests:
        url = {"/cars": cars.url, "/all": everything.url}.get(request["path"], crossings.url)
        assert request["webhook_id"] == webhook_id(request["event_id"], hook_key(url))
        basic = "Basic " + base64.b64encode(b"user:p@ss").decode()
        assert request["authorization"] == (basic if request["path"].startswith("/crossings") else None)
    assert (stats.delivered, stats.failed, stats.pending, stats.attempts) == (8, 0, 0, 8)
    shown = sink.deliveries(limit=1000)[0]
    assert len(shown) == 8 and {d["status"] for d in shown} == {"delivered"}
    crossing_urls = {d["url"] for d in shown if "crossings" in d["url"]}
    assert crossing_urls == {f"http://***@127.0.0.1:{receiver.port}/crossings?token=***"}


@pytest.mark.timeout(90)
def test_receiver_down_at_first_gets_every_event_once_it_is_up(tmp_path: Path) -> None:
    """Down for the first 12 s (the issue's "first minute", with the short schedule), events meanwhile."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    sent: list[str] = []
    with sending(tmp_path / "data", hook(url)) as sink:
        started = time.monotonic()
        while time.monotonic() - started < 12:
            message = event(DAY + len(sent), "zone.enter", zone="porch")
            sink.on_event(notice(message))
            sent.append(message["id"])
            time.sleep(0.5)
        down = sink.stats()
        assert (down.delivered, down.pending) == (0, len(sent)) and down.attempts >= 5, down
        with receiving(SECRET, tmp_path / "received.jsonl", port=port) as receiver:
            for _ in range(3):
                message = event(DAY + len(sent), "zone.leave", zone="porch")
                sink.on_event(notice(message))
                sent.append(message["id"])
            took = wait_until(lambda: {r["event_id"] for r in receiver.accepted()} == set(sent), 20,
                              "every event at the receiver")
            time.sleep(SHORT.max_s + 0.5)  # room for a duplicate to show up
            requests = receiver.requests()
            stats = sink.stats()
    assert took < SHORT.max_s + 5, f"the receiver waited {took:.1f} s after coming up"
    assert all(r["verified"] for r in requests)
    deduplicated = {r["webhook_id"]: r["event_id"] for r in requests}
    assert sorted(deduplicated.values()) == sorted(sent), "each event once in the de-duplicated log"
    assert set(deduplicated) == {webhook_id(event_id, hook_key(url)) for event_id in sent}
    assert (stats.delivered, stats.pending, stats.failed) == (len(sent), 0, 0)


@pytest.mark.timeout(60)
def test_503_is_retried_with_the_same_webhook_id_until_200(tmp_path: Path) -> None:
    with receiving(SECRET, tmp_path / "received.jsonl", fail_first=2, fail_status=503) as receiver, \
            sending(tmp_path / "data", hook(receiver.url)) as sink:
        sent = [event(DAY + n, "object.start") for n in range(2)]
        for message in sent:
            sink.on_event(notice(message))
        wait_until(lambda: len(receiver.accepted()) == 2, 30, "both delivered after two 503s each")
        # The receiver's answer is in before the sink has written it down: wait for that too.
        wait_until(lambda: len(by_status(sink, "delivered")) == 2, 10, "both deliveries marked delivered")
        requests = receiver.requests()
        delivered = by_status(sink, "delivered")
    for message in sent:
        attempts = [r for r in requests if r["event_id"] == message["id"]]
        assert [r["answered"] for r in attempts] == [503, 503, 200]
        assert len({r["webhook_id"] for r in attempts}) == 1 and all(r["verified"] for r in attempts)
        assert attempts[1]["at"] - attempts[0]["at"] < 5, "the first retry within a few seconds"
    assert sorted((d["attempts"], d["last_status"]) for d in delivered) == [(3, 200), (3, 200)]


@pytest.mark.timeout(60)
def test_429_retry_after_is_honoured(tmp_path: Path) -> None:
    with receiving(SECRET, tmp_path / "received.jsonl", fail_first=1, fail_status=429, retry_after=3) as receiver, \
            sending(tmp_path / "data", hook(receiver.url)) as sink:
        sink.on_event(notice(event(DAY, "object.start")))
        wait_until(lambda: len(receiver.accepted()) == 1, 20, "delivered after the 429")
        first, second = receiver.requests()
    assert (first["answered"], second["answered"]) == (429, 200)
    waited = second["at"] - first["at"]
    assert 2.9 <= waited < 6, f"retried after {waited:.2f} s, Retry-After said 3 (the backoff alone: < 0.3 s)"


@pytest.mark.timeout(60)
def test_400_is_final_and_logged_without_secrets(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="stream_detect")
    with receiving(SECRET, tmp_path / "received.jsonl", status=400) as receiver:
        url = f"{receiver.url}?api_key=k3y-v4lue"
        with sending(tmp_path / "data", hook(url)) as sink:
            for n in range(2):
                sink.on_event(notice(event(DAY + n, "object.end")))
            wait_until(lambda: sink.stats().failed == 2, 15, "both failed")
            time.sleep(SHORT.max_s + 0.5)  # longer than any retry would wait
            failed = by_status(sink, "failed")
            requests = receiver.requests()
    assert len(requests) == 2 and len({r["webhook_id"] for r in requests}) == 2, "each tried once only"
    assert [(d["attempts"], d["last_status"], d["next_at"]) for d in failed] == [(1, 400, None)] * 2
    assert all(d["last_error"].startswith("HTTP 400") for d in failed)
    finals = [r.getMessage() for r in caplog.records if "final" in r.getMessage()]
    assert len(finals) == 2 and all("api_key=***" in line for line in finals), finals
    everything = "\n".join(r.getMessage() for r in caplog.records)
    assert "k3y-v4lue" not in everything and SECRET.removeprefix("whsec_") not in everything


@pytest.mark.timeout(60)
def test_redirects_are_not_followed(tmp_path: Path) -> None:
    with receiving(SECRET, tmp_path / "elsewhere.jsonl") as elsewhere, \
            receiving(SECRET, tmp_path / "moved.jsonl", status=307, location=elsewhere.url) as moved, \
            sending(tmp_path / "data", hook(moved.url)) as sink:
        sink.on_event(notice(event(DAY, "line.cross")))
        wait_until(lambda: sink.stats().failed == 1, 15, "failed on the redirect")
        time.sleep(SHORT.max_s + 0.5)
        failed = by_status(sink, "failed")
        assert len(moved.requests()) == 1 and elsewhere.requests() == []
    assert failed[0]["last_status"] == 307 and failed[0]["attempts"] == 1
    assert f"redirect to {elsewhere.url} not followed" in failed[0]["last_error"]


@pytest.mark.timeout(60)
def test_a_delivery_is_given_up_after_max_age(tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}/hook"
    with sending(tmp_path, hook(down, max_age_h=4 / 3600)) as sink:
        sink.on_event(notice(event(DAY, "object.start")))
        took = wait_until(lambda: sink.stats().failed == 1, 15, "given up")
        failed = by_status(sink, "failed")
    assert 2 <= took <= 6, f"gave up after {took:.1f} s with a 4 s horizon"
    assert failed[0]["attempts"] >= 2 and failed[0]["last_status"] is None
    assert "ConnectionRefusedError" in failed[0]["last_error"] and "max_age_h" in failed[0]["last_error"]


def _arrival(receiver: Receiver, event_id: str) -> float | None:
    return next((r["at"] for r in receiver.accepted() if r["event_id"] == event_id), None)


@pytest.mark.timeout(60)
def test_a_slow_receiver_does_not_delay_another_webhook(tmp_path: Path) -> None:
    with receiving(SECRET, tmp_path / "slow.jsonl", delay_s=5) as slow, \
            receiving(SECRET, tmp_path / "fast.jsonl") as fast:
        sink = WebhookSink([hook(slow.url), hook(fast.url)], tmp_path / "data", retry=SHORT)
        try:
            sent = [event(DAY + n, "zone.enter", zone="porch") for n in range(3)]
            started = time.time()
            for message in sent:
                sink.on_event(notice(message))
            wait_until(lambda: len(fast.accepted()) == 3, 10, "the fast receiver has every event")
            fast_done = max(r["at"] for r in fast.accepted()) - started
            assert slow.accepted() == [], "the slow receiver still sleeps on the first"
            wait_until(lambda: len(slow.accepted()) == 1, 10, "the slow receiver answered the first")
            slow_first = (_arrival(slow, sent[0]["id"]) or 0) - started
        finally:
            closing = time.monotonic()
            sink.close()
            closed_in = time.monotonic() - closing
        pending = sink.deliveries(status="pending")[0]
    assert fast_done < 2, f"the fast receiver had everything {fast_done:.1f} s after the events"
    assert 4.5 < slow_first < 8, slow_first
    assert closed_in < 2, f"close waited {closed_in:.1f} s for the slow receiver"
    assert len(pending) >= 1 and all(d["url"] == slow.url for d in pending), "left for the next start"


@pytest.mark.timeout(30)
def test_bounds_duplicates_and_webhooks_removed_between_runs(tmp_path: Path) -> None:
    first, second = (f"http://127.0.0.1:{free_port()}/hook{n}" for n in range(2))
    with pytest.raises(ConfigError, match="webhooks 0 and 1 have the same url"):
        WebhookSink([hook(first), hook(first, kinds=["line.cross"])], tmp_path)
    with sending(tmp_path, hook(first), max_pending=2) as sink:
        for n in range(4):
            sink.on_event(notice(event(DAY + n, "object.start")))
        stats = sink.stats()
    assert (stats.pending, stats.dropped) == (2, 2), stats
    with sending(tmp_path, hook(second)) as sink:
        failed = by_status(sink, "failed")
        assert sink.stats().pending == 0
    assert len(failed) == 2 and all("no longer configured" in d["last_error"] for d in failed)
