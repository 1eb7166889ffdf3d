"""What the bench asks of a running analyzer over HTTP, with the standard library only: a plain
install of stream-detect has no HTTP client package."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any


def get_json(url: str, timeout_s: float = 10.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return json.loads(response.read())


def wait_ready(base: str, timeout_s: float) -> None:
    """Waits until ``/healthz`` answers 200 (the model is loaded); fails at once when it reports a failure."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=5) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as error:
            body = error.read().decode(errors="replace")
            if "failed" in body:
                raise RuntimeError(f"the model failed to load: {body}") from None
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the model did not load within {timeout_s:.0f} s")
