"""``stream-detect`` exactly as users run it, but with the fake detector: for
fault tests that need a real process (RSS, file descriptors, signals, logs)
where the model does not matter.

    python -m tests.faults.fake_run run --config FILE ...

``FAKE_BOXES`` sets the detections per frame (message size).
"""

from __future__ import annotations

import os
import sys

from stream_detect import cli
from stream_detect.commands import run
from stream_detect.detect.fake import FakeDetector


def main() -> int:
    boxes = int(os.environ.get("FAKE_BOXES", "1"))
    run.load_detector = lambda config: FakeDetector(boxes=boxes)  # type: ignore[assignment]
    return cli.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
