"""Webhooks in a running analyzer: configured, served, measured; a bad entry is one line naming it."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest

from stream_detect.config import ConfigError, parse_config

from ..processes import serving_command

FAKE_RUN = "tests.faults.fake_run"  # stream-detect as users run it, with the fake detector

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


@pytest.mark.timeout(60)
def test_run_serves_the_deliveries_and_their_counters(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("model: {id: fake}\nsources: [{id: cam, kind: synthetic}]\n"
                      f"webhooks: [{{url: 'http://127.0.0.1:9/hook', secret: '{SECRET}'}}]\n")
    with serving_command("run", "--port", "0", "--config", str(config), "--data-dir", str(tmp_path),
                         module=FAKE_RUN) as served:
        answer = httpx.get(f"{served.base}/webhooks/deliveries?status=pending", timeout=10)
        assert answer.status_code == 200 and answer.json()["deliveries"] == []
        metrics = httpx.get(f"{served.base}/metrics", timeout=10).text
        assert "stream_detect_webhook_pending 0.0" in metrics
        assert SECRET not in metrics and SECRET[6:] not in served.stderr
    assert (tmp_path / "webhooks.db").is_file()


def test_a_bad_webhook_url_is_named_with_its_key() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"webhooks": [{"url": "ftp://example.test/x", "secret": SECRET}]}, "config.yaml")
    assert "webhooks.0.url" in str(caught.value) and SECRET not in str(caught.value)
