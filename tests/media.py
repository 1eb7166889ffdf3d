"""Test media made on the spot: short videos written with PyAV."""

from __future__ import annotations

import fractions
from pathlib import Path

import av
import numpy as np

from .checkpoints import draw_scene


def write_h264(
    path: Path,
    *,
    frames: int = 50,
    width: int = 320,
    height: int = 240,
    rate: int = 25,
    audio: bool = False,
    seed: int = 0,
) -> Path:
    """An H.264 MP4 of moving shapes (and a sine tone when ``audio``)."""
    rng = np.random.default_rng(seed)
    container = av.open(str(path), "w")
    video = container.add_stream("libx264", rate=rate)
    video.width, video.height, video.pix_fmt = width, height, "yuv420p"
    video.options = {"preset": "ultrafast", "g": str(rate)}
    sound = None
    if audio:
        sound = container.add_stream("aac", rate=48_000)
        sound.layout = "mono"
    import cv2

    samples_per_frame = 48_000 // rate
    for i in range(frames):
        scene, _ = draw_scene(rng)
        image = cv2.resize(scene, (width, height))
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = i
        frame.time_base = fractions.Fraction(1, rate)
        for packet in video.encode(frame):
            container.mux(packet)
        if sound is not None:
            t = (np.arange(samples_per_frame) + i * samples_per_frame) / 48_000
            tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
            chunk = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            chunk.sample_rate = 48_000
            chunk.pts = i * samples_per_frame
            for packet in sound.encode(chunk):
                container.mux(packet)
    for packet in video.encode():
        container.mux(packet)
    if sound is not None:
        for packet in sound.encode():
            container.mux(packet)
    container.close()
    return path
