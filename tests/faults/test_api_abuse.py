"""Inference API clients that send images to hurt the server: degenerate sizes,
and a few kilobytes of PNG that decode to gigabytes.

The server is a real ``stream-detect run --model demo`` process where the
cameras' message rate, the log or the memory is the point.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from stream_detect.config import ModelConfig
from stream_detect.detect.hf import HFDetector


@pytest.fixture(scope="module")
def demo_detector() -> HFDetector:
    return HFDetector.load(ModelConfig(id="demo", device="cpu"))


def png(width: int, height: int, colour: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.timeout(120)
def test_the_processor_is_told_the_channel_layout(demo_detector: HFDetector) -> None:
    # A (3, 640, 3) array is 3 rows of 640 pixels; left to guess, the RT-DETR
    # processor read it as 3 channels of 640x3 (and a 1-pixel-high image as one
    # channel, failing the batch). The API refuses images this small; frames
    # of other callers reach the processor.
    rng = np.random.default_rng(5)
    for height, width in ((3, 640), (1, 640), (1, 1), (640, 3)):
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        ours = demo_detector.preprocess([image]).pixel_values
        channels_first = torch.from_numpy(image).permute(2, 0, 1)  # unambiguous for the processor: (3, H, W)
        reference = demo_detector.processor(images=[channels_first], return_tensors="pt")["pixel_values"]
        assert ours.shape == (1, 3, 192, 320)
        torch.testing.assert_close(ours, reference, msg=f"{width}x{height}")
        assert len(demo_detector.detect([image], 0.5)) >= 0  # and it runs
