"""``stream-detect run --cluster`` whose replicas load the fixed-cost fake detector (tests only).

Run as ``python -m tests.cluster.fake_analyzer CONFIG [DELAY_MS]``: everything else is the real command.
"""

from __future__ import annotations

import functools
import sys

from stream_detect.cluster.run import run_cluster
from stream_detect.config import load_config
from stream_detect.detect.fake import fixed_cost_detector
from stream_detect.logs import setup_logging

if __name__ == "__main__":
    setup_logging("INFO")
    delay_s = float(sys.argv[2]) / 1000 if len(sys.argv) > 2 else 0.05
    sys.exit(run_cluster(load_config(sys.argv[1]),
                         load=functools.partial(fixed_cost_detector, delay_s=delay_s, model_id="fake-detr")))
