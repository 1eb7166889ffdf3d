"""``GET /webhooks/deliveries`` through a real HTTP client against a real uvicorn on 127.0.0.1, over
the deliveries a sink made to a receiver that accepts, one that refuses with 400 and one that is down."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from stream_detect.server.webhooks_api import DeliveryQueries, install_webhooks_api

from ..events.sample import DAY, event
from ..server.serving import serving_app
from .test_webhook_delivery import SECRET, hook, notice, sending
from .webhook_receiver import free_port, receiving, wait_until

pytestmark = pytest.mark.timeout(60)


@contextlib.contextmanager
def serving_deliveries(deliveries: DeliveryQueries) -> Iterator[httpx.Client]:
    app = FastAPI()
    install_webhooks_api(app, deliveries)
    with serving_app(app, "test-webhooks-server") as base, httpx.Client(base_url=base, timeout=10) as client:
        yield client


def listed(http: httpx.Client, **params: Any) -> dict[str, Any]:
    response = http.get("/webhooks/deliveries", params=params)
    assert response.status_code == 200, response.text
    for secret in (SECRET, SECRET.removeprefix("whsec_"), "hunter2", "t0ken"):
        assert secret not in response.text
    return dict(response.json())


def test_deliveries_by_status_newest_first_in_pages(tmp_path: Path) -> None:
    with receiving(SECRET, tmp_path / "ok.jsonl") as ok, receiving(SECRET, tmp_path / "no.jsonl", status=400) as no:
        accepting = hook(f"http://admin:hunter2@127.0.0.1:{ok.port}/hook?token=t0ken")
        refusing = hook(no.url, kinds=["object.end"])
        down = hook(f"http://127.0.0.1:{free_port()}/hook", kinds=["object.end"])
        with sending(tmp_path / "data", accepting, refusing, down) as sink, serving_deliveries(sink) as http:
            sent = [event(DAY + n, "object.end" if n % 3 == 0 else "object.start") for n in range(9)]
            for message in sent:
                sink.on_event(notice(message))
            ends = sum(1 for m in sent if m["kind"] == "object.end")
            wait_until(lambda: sink.stats().delivered == 9 and sink.stats().failed == ends, 20, "settled")
            time.sleep(0.3)

            everything = listed(http, limit=1000)["deliveries"]
            assert len(everything) == 9 + 2 * ends
            keys = [(d["created_at"], d["webhook_id"]) for d in everything]
            assert keys == sorted(keys, reverse=True), "newest first"

            delivered = listed(http, status="delivered")["deliveries"]
            assert len(delivered) == 9
            assert {d["url"] for d in delivered} == {f"http://***@127.0.0.1:{ok.port}/hook?token=***"}
            assert all(d["attempts"] == 1 and d["last_status"] == 200 and d["next_at"] is None for d in delivered)
            assert set(delivered[0]) == {"webhook_id", "event_id", "url", "status", "attempts", "created_at",
                                         "last_at", "last_status", "last_error", "next_at", "finished_at"}

            failed = listed(http, status="failed")["deliveries"]
            assert [(d["url"], d["last_status"]) for d in failed] == [(no.url, 400)] * ends

            pending = listed(http, status="pending")["deliveries"]
            assert len(pending) == ends and all(d["url"] == down.url for d in pending)
            assert all(d["next_at"] is not None and d["last_status"] is None for d in pending)
            tried = [d for d in pending if d["attempts"]]  # the others wait while the webhook is paused
            assert tried and all("ConnectionRefusedError" in d["last_error"] for d in tried), pending

            pages, cursor = [], None
            while True:
                page = listed(http, limit=4, **({"cursor": cursor} if cursor else {}))
                pages.append(page["deliveries"])
                cursor = page["next"]
                if cursor is None:
                    break
            assert [d["webhook_id"] for p in pages for d in p] == [d["webhook_id"] for d in everything]
            assert all(len(p) <= 4 for p in pages) and len(pages) == -(-len(everything) // 4)

            for params, complaint in [({"status": "sent"}, "status must be one of pending, delivered, failed"),
                                      ({"limit": "0"}, "limit must be a whole number"),
                                      ({"limit": "many"}, "limit must be a whole number"),
                                      ({"cursor": "garbage"}, "is not a cursor of this server")]:
                response = http.get("/webhooks/deliveries", params=params)
                assert response.status_code == 422, (params, response.text)
                assert list(response.json()) == ["error"] and complaint in response.json()["error"]
                assert "\n" not in response.text
