"""``stream-detect demo``: the product working offline, with nothing to download.

A synthetic camera (moving circles, squares and triangles), the bundled demo
model, the server and the dashboard on http://127.0.0.1:8000.
"""

from __future__ import annotations

from typing import Any

from ..config import Config, parse_config

DEMO_SOURCE = {"kind": "synthetic", "id": "demo-camera", "width": 640, "height": 360, "fps": 15}


def demo_config(base: Config, explicit_model: dict[str, Any]) -> Config:
    """The demo's configuration: ``base``'s server and model options over the demo defaults."""
    data = base.model_dump(mode="python", exclude_unset=True)
    data["model"] = {"id": "demo", "threshold": 0.5, **explicit_model}
    data["sources"] = data.get("sources") or [DEMO_SOURCE]
    return parse_config(data, origin="demo")
