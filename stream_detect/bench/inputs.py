"""What a bench run measures on: a model directory and a video clip, both made locally."""

from __future__ import annotations

import fractions
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np

from ..sources.synthetic import SyntheticScene

# facebook/detr-resnet-50's label table (COCO's 91 ids, gaps as N/A).
_LABEL_TEXT = (
    "N/A person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant N/A stop_sign "
    "parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe N/A backpack umbrella N/A N/A "
    "handbag tie suitcase frisbee skis snowboard sports_ball kite baseball_bat baseball_glove skateboard surfboard "
    "tennis_racket bottle N/A wine_glass cup fork knife spoon bowl banana apple sandwich orange broccoli carrot "
    "hot_dog pizza donut cake chair couch potted_plant bed N/A dining_table N/A N/A toilet N/A tv laptop mouse "
    "remote keyboard cell_phone microwave oven toaster sink refrigerator N/A book clock vase scissors teddy_bear "
    "hair_drier toothbrush"
)
COCO_LABELS = tuple(_LABEL_TEXT.split())


def random_detr_r50(directory: Path) -> Path:
    """Saves a DETR with facebook/detr-resnet-50's published architecture and random weights.

    A timm ResNet-50 backbone, 6+6 transformer layers of width 256, 100
    queries, 91 COCO labels, and the default processor (shortest edge 800,
    longest 1333). Speed does not depend on the weights; nothing is downloaded.
    """
    from transformers import DetrConfig, DetrForObjectDetection, DetrImageProcessor

    if (directory / "config.json").exists():
        return directory
    labels = {i: name.replace("_", " ") for i, name in enumerate(COCO_LABELS)}
    # The backbone as published: a timm ResNet-50, named, never downloaded.
    backbone: dict[str, Any] = {"use_timm_backbone": True, "backbone": "resnet50", "use_pretrained_backbone": False}
    config = DetrConfig(
        **backbone, num_queries=100, d_model=256, encoder_layers=6, decoder_layers=6,
        encoder_ffn_dim=2048, decoder_ffn_dim=2048,
        encoder_attention_heads=8, decoder_attention_heads=8, id2label=labels,
        label2id={name: i for i, name in labels.items()},
    )
    directory.mkdir(parents=True, exist_ok=True)
    DetrForObjectDetection(config).eval().save_pretrained(directory)
    DetrImageProcessor().save_pretrained(directory)
    return directory


def write_clip(path: Path, width: int, height: int, frames: int, rate: int = 25) -> Path:
    """An H.264 MP4 of the synthetic camera's moving shapes (libx264, yuv420p, a keyframe a second)."""
    scene = SyntheticScene(width, height, seed=1)
    return _encode(path, width, height, rate, (scene.next_frame()[0] for _ in range(frames)))


def _encode(path: Path, width: int, height: int, rate: int, images: Iterable[np.ndarray]) -> Path:
    """``images`` (RGB) as an H.264 MP4 at ``rate`` frames per second (libx264, yuv420p, a keyframe a second)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "g": str(rate)}
        for index, image in enumerate(images):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = index, fractions.Fraction(1, rate)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def decode_frames(path: Path, count: int) -> list[np.ndarray]:
    """The first ``count`` frames of ``path`` as ``(H, W, 3) uint8`` RGB arrays."""
    images = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            images.append(frame.to_ndarray(format="rgb24"))
            if len(images) >= count:
                break
    return images


def write_still_clip(path: Path, width: int, height: int, seconds: float, rate: int = 10,
                     moving_share: float = 0.2, seed: int = 3) -> Path:
    """A mostly still camera: a textured scene with sensor noise, where a disc crosses the picture for
    ``moving_share`` of the clip (at its start) and stands still the rest of the time (H.264 MP4)."""
    import cv2

    rng = np.random.default_rng(seed)
    low = rng.integers(20, 120, (max(2, height // 30), max(2, width // 30), 3), dtype=np.uint8)
    background = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)
    radius = max(4, height // 12)
    frames = max(2, round(seconds * rate))
    moving = max(1, round(frames * moving_share))

    def images() -> Iterator[np.ndarray]:
        for index in range(frames):
            image = background.copy()
            x = radius + round((width - 2 * radius) * min(index, moving) / moving)
            cv2.circle(image, (x, height // 2), radius, (230, 210, 150), -1, cv2.LINE_AA)
            noise = rng.standard_normal(image.shape, dtype=np.float32) * 6
            yield np.clip(image + noise, 0, 255).astype(np.uint8)

    return _encode(path, width, height, rate, images())
