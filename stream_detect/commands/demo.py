"""``stream-detect demo``: the product working offline, with nothing to download.

A synthetic camera (moving circles, squares and triangles) with a zone and a
line, the bundled demo model, the server and the dashboard on
http://127.0.0.1:8000: boxes with track ids, live counts and events.
"""

from __future__ import annotations

from typing import Any

from ..config import Config, parse_config

# A zone on the right third and a line down the middle (left to right is "in"): the synthetic
# camera's shapes drift across both, so events reach the dashboard within the first minute.
DEMO_SOURCE = {
    "kind": "synthetic", "id": "demo-camera", "width": 640, "height": 360, "fps": 15,
    "zones": [{"name": "right", "polygon": [[0.65, 0], [1, 0], [1, 1], [0.65, 1]]}],
    "lines": [{"name": "middle", "points": [[0.5, 0], [0.5, 1]]}],
}


def demo_config(base: Config, explicit_model: dict[str, Any]) -> Config:
    """The demo's configuration: ``base``'s server and model options over the demo defaults."""
    data = base.model_dump(mode="python", exclude_unset=True)
    data["model"] = {"id": "demo", "threshold": 0.5, **explicit_model}
    data["sources"] = data.get("sources") or [DEMO_SOURCE]
    return parse_config(data, origin="demo")
