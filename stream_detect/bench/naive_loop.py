"""(c) The naive loop a user writes by hand: OpenCV reads, ``transformers.pipeline`` per frame, OpenCV draws
and ``cv2.VideoWriter`` writes.

In-process, :func:`naive` times the frames after a warm-up frame. As a
command (``python -m stream_detect.bench.naive_loop MODEL CLIP SIZE DEVICE
FRAMES THRESHOLD``), it runs every frame and prints ``{"frames": N}``: the
bench times that whole process, start-up included, as it times
``stream-detect annotate``.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from .end_to_end import Throughput


def naive(model_dir: str, size: dict[str, int], device: str, clip: Path, frames: int,
          threshold: float, warm_up: bool = True) -> Throughput:
    """``frames`` frames of ``clip`` through the naive loop (after one warm-up frame when ``warm_up``)."""
    import cv2
    from PIL import Image
    from transformers import AutoImageProcessor, pipeline

    processor = AutoImageProcessor.from_pretrained(model_dir)
    processor.size = size
    detect = pipeline("object-detection", model=model_dir, image_processor=processor, device=device)
    capture = cv2.VideoCapture(str(clip))
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    first_counted = 1 if warm_up else 0
    with tempfile.TemporaryDirectory(prefix="stream-detect-bench-") as directory:
        writer = cv2.VideoWriter(str(Path(directory) / "naive.mp4"), cv2.VideoWriter.fourcc(*"mp4v"), 25,
                                 (width, height))
        counted, started = 0, time.perf_counter()
        try:
            for index in range(frames + first_counted):
                ok, bgr = capture.read()
                if not ok:
                    break
                if index == first_counted:
                    started = time.perf_counter()
                rgb = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                for found in detect(rgb, threshold=threshold):
                    box = found["box"]
                    cv2.rectangle(bgr, (box["xmin"], box["ymin"]), (box["xmax"], box["ymax"]), (0, 255, 0), 2)
                    cv2.putText(bgr, f"{found['label']} {found['score']:.2f}", (box["xmin"], box["ymin"] - 4),
                                cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 255, 0), 2)
                writer.write(bgr)
                counted += index >= first_counted
        finally:
            writer.release()
            capture.release()
    return Throughput(counted, time.perf_counter() - started)


def main(argv: list[str]) -> int:
    model_dir, clip, size, device, frames, threshold = argv
    result = naive(model_dir, json.loads(size), device, Path(clip), int(frames), float(threshold), warm_up=False)
    print(json.dumps({"frames": result.frames}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
