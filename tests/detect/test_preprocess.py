"""Preprocessing in torch against the checkpoint's own image processor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stream_detect.detect.device import resolve_device
from stream_detect.detect.hf import resize_to
from stream_detect.detect.preprocess import TorchPreprocessor, resized_size

from .test_hf_detector import scenes


@pytest.fixture()
def processor(tiny_detr_dir: Path):  # type: ignore[no-untyped-def]
    from transformers import AutoImageProcessor

    return AutoImageProcessor.from_pretrained(tiny_detr_dir)


@pytest.mark.parametrize("channels_last", [False, True])
def test_a_padded_batch_equals_the_processor(processor, channels_last: bool) -> None:  # type: ignore[no-untyped-def]
    images = scenes([(320, 240), (200, 300), (160, 160), (1280, 720)])
    ours = TorchPreprocessor.from_processor(processor, resolve_device("cpu"), channels_last)
    assert ours is not None
    theirs = processor(images=images, return_tensors="pt")
    inputs = ours(images)
    assert inputs.pixel_values.shape == theirs["pixel_values"].shape
    assert inputs.pixel_values.is_contiguous(memory_format=torch.channels_last) == channels_last
    torch.testing.assert_close(inputs.pixel_values, theirs["pixel_values"], atol=1e-5, rtol=0)
    assert torch.equal(inputs.pixel_mask, theirs["pixel_mask"])


@pytest.mark.parametrize(("shortest", "longest"), [(800, 1333), (480, 800), (320, 512)])
def test_input_size_override_equals_the_processor(processor, shortest: int, longest: int) -> None:  # type: ignore[no-untyped-def]
    resize_to(processor, shortest, longest)
    image = scenes([(1280, 720)])[0]
    ours = TorchPreprocessor.from_processor(processor, resolve_device("cpu"))
    assert ours is not None
    theirs = processor(images=[image], return_tensors="pt")["pixel_values"]
    inputs = ours([image])
    assert inputs.pixel_values.shape == theirs.shape
    assert max(theirs.shape[-2:]) <= longest and min(theirs.shape[-2:]) <= shortest
    torch.testing.assert_close(inputs.pixel_values, theirs, atol=1e-5, rtol=0)


def test_a_fixed_size_processor_refuses_an_input_size_override() -> None:
    from transformers import RTDetrImageProcessor

    from stream_detect.errors import ModelError

    processor = RTDetrImageProcessor(size={"height": 192, "width": 320})
    with pytest.raises(ModelError, match="fixed 320x192"):
        resize_to(processor, 200, None)
    resize_to(processor, None, None)  # no override: nothing to refuse
    assert processor.size["height"] == 192 and processor.size["width"] == 320


def test_resized_sizes_follow_transformers() -> None:
    from transformers.image_transforms import get_size_with_aspect_ratio

    rng = np.random.default_rng(0)
    for _ in range(500):
        height, width = (int(v) for v in rng.integers(16, 4000, 2))
        shortest = int(rng.integers(64, 1200))
        longest = int(rng.integers(shortest, 2000))
        expected = get_size_with_aspect_ratio((height, width), shortest, longest)
        assert resized_size(height, width, {"shortest_edge": shortest, "longest_edge": longest}) == expected


def test_other_processor_families_fall_back(processor) -> None:  # type: ignore[no-untyped-def]
    class OtherProcessor:
        do_resize = do_rescale = do_normalize = True

    assert TorchPreprocessor.from_processor(OtherProcessor(), resolve_device("cpu")) is None
    processor.do_normalize = False
    assert TorchPreprocessor.from_processor(processor, resolve_device("cpu")) is None
