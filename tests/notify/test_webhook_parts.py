"""The webhooks' pure parts and their outbox: settings, signatures checked by the specification's own
implementation, the retry schedule, ``Retry-After``, and the outbox's schema, pages and lock."""

from __future__ import annotations

import base64
import json
import random
import sqlite3
from datetime import datetime, timezone
from email.utils import format_datetime
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError
from standardwebhooks import Webhook, WebhookVerificationError

from stream_detect.config import _format_error
from stream_detect.errors import InputError
from stream_detect.notify.webhook_config import WebhookConfig, secret_key
from stream_detect.notify.webhook_outbox import (
    LATEST_VERSION,
    DeliveryReader,
    NewDelivery,
    Outbox,
    WebhookOutboxError,
    outbox_path,
)
from stream_detect.notify.webhook_retry import RetryPolicy, Verdict, retry_after_s, verdict
from stream_detect.notify.webhook_signing import hook_key, signed_headers, webhook_id

pytestmark = pytest.mark.timeout(30)

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()


def test_config_defaults_and_secret_never_shown() -> None:
    config = WebhookConfig(url="https://hooks.example/in?token=abc", secret=SECRET, kinds=["line.cross"])
    assert (config.timeout_s, config.max_age_h, config.streams, config.labels) == (10.0, 24.0, None, None)
    assert config.key == bytes(range(32))
    shown = [repr(config), str(config), config.model_dump_json(), json.dumps(config.model_dump(mode="json"))]
    secret_body = SECRET.removeprefix("whsec_")
    assert all(secret_body not in text for text in shown), shown


@pytest.mark.parametrize(("changes", "complaint"), [
    ({"url": "ftp://hooks.example/in"}, "http:// or https://"),
    ({"url": "https:///no-host"}, "with a host"),
    ({"url": "http://hooks.example:99999/"}, "port"),
    ({"secret": "sk_" + SECRET}, "must start with 'whsec_'"),
    ({"secret": "whsec_!!!notbase64!!!"}, "standard base64"),
    ({"secret": "whsec_" + base64.b64encode(b"short").decode()}, "16 to 256 bytes"),
    ({"kinds": ["object.start", "sneeze"]}, "'sneeze' is not one of"),
    ({"kinds": []}, "at least 1"),
    ({"timeout_s": 0}, "greater than 0"),
    ({"max_age_h": -1}, "greater than 0"),
    ({"colour": "red"}, "Extra inputs"),
])
def test_config_refuses_with_a_message_that_never_holds_the_secret(changes: dict[str, object],
                                                                      complaint: str) -> None:
    given = {"url": "https://hooks.example/in", "secret": SECRET, **changes}
    with pytest.raises(ValidationError) as caught:
        WebhookConfig.model_validate(given)
    message = str(caught.value)
    assert complaint in message
    secret = str(given["secret"])
    assert secret not in message and secret.removeprefix("whsec_") not in message


def test_the_configuration_loaders_line_never_holds_the_secret() -> None:
    """As the loader will report it once ``webhooks: list[WebhookConfig]`` is in ``Config``."""

    class Holder(BaseModel):
        webhooks: list[WebhookConfig]

    bad = "whsec_" + base64.b64encode(b"tiny-secret").decode()
    given = {"webhooks": [{"url": "https://user:pw@hooks.example/in", "secret": bad}]}
    with pytest.raises(ValidationError) as caught:
        Holder.model_validate(given)
    line = _format_error(caught.value, "config.yaml")
    assert line.startswith("config.yaml: webhooks.0.secret: secret must encode 16 to 256 bytes"), line
    assert bad not in line and bad not in str(caught.value)
    given["webhooks"][0].update(url="gopher://user:pw@hooks.example/in", secret=SECRET)
    with pytest.raises(ValidationError) as caught:
        Holder.model_validate(given)
    line = _format_error(caught.value, "config.yaml")
    assert "url must be an http" in line and ":pw@" not in line and SECRET not in str(caught.value), line


def test_signature_verifies_with_the_specifications_implementation() -> None:
    body = b'{"type":"event","id":"e-1","kind":"line.cross"}'
    now = int(datetime.now(timezone.utc).timestamp())
    headers = signed_headers(secret_key(SECRET), "msg_1", now, body)
    assert headers["content-type"] == "application/json"
    assert Webhook(SECRET).verify(body, headers) == json.loads(body)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body.replace(b"e-1", b"e-2"), headers)
    other = "whsec_" + base64.b64encode(bytes(range(1, 33))).decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(body, headers)
    stale = signed_headers(secret_key(SECRET), "msg_1", now - 3600, body)
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(SECRET).verify(body, stale)


def test_webhook_ids_are_stable_per_event_and_webhook() -> None:
    first, second = hook_key("https://a.example/in"), hook_key("https://b.example/in")
    assert first != second and len(first) == 16
    assert webhook_id("e-1", first) == webhook_id("e-1", first)
    assert len({webhook_id("e-1", first), webhook_id("e-2", first), webhook_id("e-1", second)}) == 3
    assert webhook_id("line\nbreak", first).startswith("msg_") and "\n" not in webhook_id("line\nbreak", first)


@pytest.mark.parametrize(("status", "expected"), [
    (200, Verdict.DELIVERED), (204, Verdict.DELIVERED), (299, Verdict.DELIVERED),
    (301, Verdict.FINAL), (302, Verdict.FINAL), (307, Verdict.FINAL), (308, Verdict.FINAL),
    (400, Verdict.FINAL), (401, Verdict.FINAL), (404, Verdict.FINAL), (410, Verdict.FINAL), (413, Verdict.FINAL),
    (408, Verdict.RETRY), (429, Verdict.RETRY), (500, Verdict.RETRY), (502, Verdict.RETRY), (503, Verdict.RETRY),
    (599, Verdict.RETRY), (100, Verdict.FINAL),
])
def test_verdicts(status: int, expected: Verdict) -> None:
    assert verdict(status) is expected


def test_default_schedule_grows_from_seconds_to_an_hour_within_jitter() -> None:
    policy, rng = RetryPolicy(), random.Random(7)
    for failures, ceiling in [(1, 2), (2, 4), (3, 8), (4, 16), (12, 3600), (13, 3600), (10_000, 3600)]:
        waits = [policy.delay(failures, rng) for _ in range(200)]
        assert ceiling / 2 <= min(waits) and max(waits) <= ceiling, (failures, min(waits), max(waits))
        assert max(waits) - min(waits) > ceiling / 10, "jitter spreads the waits"
    total, attempts = 0.0, 0
    while total < 24 * 3600:
        attempts += 1
        total += policy.delay(attempts, rng)
    assert 25 <= attempts <= 60, attempts


def test_retry_after_is_waited_when_longer_than_the_backoff() -> None:
    policy = RetryPolicy(first_s=1, max_s=1, jitter=0)
    assert policy.next_wait(1, None) == 1
    assert policy.next_wait(1, 30) == 30
    assert policy.next_wait(1, 0.5) == 1


def test_retry_after_in_seconds_and_as_an_http_date() -> None:
    now = 1_764_720_000.0
    assert retry_after_s("120", now) == 120
    assert retry_after_s(" 3 ", now) == 3
    date = format_datetime(datetime.fromtimestamp(now + 90, timezone.utc), usegmt=True)
    assert retry_after_s(date, now) == pytest.approx(90)
    assert retry_after_s("Wed, 03 Dec 2025 00:01:00 -0000", now) == pytest.approx(60)
    past = format_datetime(datetime.fromtimestamp(now - 90, timezone.utc), usegmt=True)
    assert retry_after_s(past, now) == 0
    for unreadable in (None, "", "soon", "-5", "1.5"):
        assert retry_after_s(unreadable, now) is None, unreadable


def _delivery(serial: int, hook: str = "h1") -> NewDelivery:
    return NewDelivery(webhook_id(f"e-{serial}", hook), hook, "https://***@hooks.example/in", f"e-{serial}",
                       b'{"id": "e-%d"}' % serial)


def test_outbox_pages_newest_first_with_cursors_and_statuses(tmp_path: Path) -> None:
    outbox = Outbox(outbox_path(tmp_path))
    try:
        for serial in range(25):
            assert outbox.add([_delivery(serial)], now=1000.0 + serial // 2) == [True]  # equal times in pairs
        assert outbox.add([_delivery(3)], now=2000.0) == [False], "a webhook-id already queued is kept as it was"
        first = _delivery(0).webhook_id
        outbox.record(first, at=1100.0, status="delivered", status_code=204, error=None)
        outbox.record(_delivery(1).webhook_id, at=1101.0, status="pending", status_code=None, error="refused",
                      next_at=1200.0)
        reader = DeliveryReader(outbox_path(tmp_path))
        seen, cursor = [], None
        while True:
            page, cursor = reader.deliveries(limit=10, cursor=cursor)
            seen += page
            if cursor is None:
                break
        assert [d["event_id"] for d in seen] == [d["event_id"] for d in sorted(
            seen, key=lambda d: (d["created_at"], d["webhook_id"]), reverse=True)]
        assert len(seen) == 25 and len({d["webhook_id"] for d in seen}) == 25
        delivered, _ = reader.deliveries(status="delivered")
        assert [(d["webhook_id"], d["attempts"], d["last_status"]) for d in delivered] == [(first, 1, 204)]
        pending, _ = reader.deliveries(status="pending", limit=1000)
        assert len(pending) == 24
        retried = next(d for d in pending if d["event_id"] == "e-1")
        assert (retried["attempts"], retried["last_error"], retried["next_at"]) == (1, "refused", 1200.0)
        assert reader.counts() == {"pending": 24, "delivered": 1, "failed": 0}
        assert "body" not in seen[0]
        due = [d.event_id for d in outbox.due("h1", now=1001.5, limit=100)]
        assert due == ["e-2", "e-3"], "only what is due, most overdue first; e-1 waits until 1200"
        for bad in [{"status": "done"}, {"limit": 0}, {"cursor": "not-a-cursor"}]:
            with pytest.raises(InputError):
                reader.deliveries(**bad)  # type: ignore[arg-type]
    finally:
        outbox.close()


def test_outbox_prunes_finished_and_abandons_unconfigured(tmp_path: Path) -> None:
    with_outbox = Outbox(outbox_path(tmp_path))
    try:
        with_outbox.add([_delivery(1), _delivery(2), _delivery(3, hook="gone")], now=10.0)
        with_outbox.record(_delivery(1).webhook_id, at=20.0, status="delivered", status_code=200, error=None)
        assert with_outbox.prune(finished_before=15.0) == 0
        assert with_outbox.prune(finished_before=25.0) == 1
        assert with_outbox.abandon_hooks(["h1"], at=30.0) == 1
        counts = with_outbox.reader.counts()
        assert counts == {"pending": 1, "delivered": 0, "failed": 1}
        failed, _ = with_outbox.reader.deliveries(status="failed")
        assert failed[0]["last_error"] == "its webhook is no longer configured"
    finally:
        with_outbox.close()


def test_outbox_has_one_writer_and_refuses_foreign_or_newer_files(tmp_path: Path) -> None:
    path = outbox_path(tmp_path)
    outbox = Outbox(path)
    try:
        with pytest.raises(WebhookOutboxError, match="open already"):
            Outbox(path)
    finally:
        outbox.close()
    outbox.close()  # idempotent
    Outbox(path).close()  # the lock went with the first

    newer = tmp_path / "newer" / "webhooks.db"
    Outbox(newer).close()
    with sqlite3.connect(newer) as connection:
        connection.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    with pytest.raises(WebhookOutboxError, match="newer stream-detect"):
        Outbox(newer)

    foreign = tmp_path / "foreign" / "webhooks.db"
    foreign.parent.mkdir()
    with sqlite3.connect(foreign) as connection:
        connection.execute("CREATE TABLE accounts (name TEXT)")
    with pytest.raises(WebhookOutboxError, match="another program"):
        Outbox(foreign)

    garbage = tmp_path / "garbage" / "webhooks.db"
    garbage.parent.mkdir()
    garbage.write_bytes(b"not a database at all" * 100)
    with pytest.raises(WebhookOutboxError, match="not an SQLite database"):
        Outbox(garbage)
    assert garbage.read_bytes() == b"not a database at all" * 100


def test_reader_of_a_missing_outbox_is_empty(tmp_path: Path) -> None:
    reader = DeliveryReader(outbox_path(tmp_path))
    assert reader.deliveries() == ([], None)
    assert reader.counts() == {"pending": 0, "delivered": 0, "failed": 0}
