"""``stream-detect annotate``: every frame, same size, rate and audio, checked with ffprobe."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import jsonschema
import pytest

from stream_detect.detect.device import resolve_device

from ..ffprobe import needs_ffprobe, probe, video_stream
from ..media import write_h264

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "stream_detect" / "schema" / "messages.schema.json").read_text())


@needs_ffprobe
@pytest.mark.timeout(300)
@pytest.mark.parametrize("audio", [True, False])
def test_annotate_keeps_every_frame_and_the_audio(tmp_path: Path, tiny_detr_dir: Path, audio: bool) -> None:
    source = write_h264(tmp_path / "in.mp4", frames=75, width=320, height=240, rate=25, audio=audio)
    output, sidecar = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "stream_detect", "annotate", str(source), "--output", str(output),
         "--jsonl", str(sidecar), "--model", str(tiny_detr_dir), "--threshold", "0.01"],
        capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stderr
    before, after = probe(source), probe(output)
    video_in, video_out = video_stream(before), video_stream(after)
    assert int(video_out["nb_read_frames"]) == int(video_in["nb_read_frames"]) == 75
    assert (video_out["width"], video_out["height"]) == (320, 240)
    assert Fraction(video_out["r_frame_rate"]) == Fraction(video_in["r_frame_rate"]) == 25
    assert abs(float(after["format"]["duration"]) - float(before["format"]["duration"])) < 0.1
    kinds = sorted(s["codec_type"] for s in after["streams"])
    assert kinds == (["audio", "video"] if audio else ["video"])
    lines = [json.loads(line) for line in sidecar.read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(75))
    for line in lines:  # one shape for every JSON Lines file: the websocket's detections message
        jsonschema.validate(line, SCHEMA)
        assert line["type"] == "detections" and line["stream"] == "annotate"
    assert all(d["label"] in {"circle", "square", "triangle"} for line in lines for d in line["detections"])
    assert "Traceback" not in result.stderr
    # libx264 writes its settings into the stream: beside a CPU detector it encodes on its share of the cores.
    assert f" threads={resolve_device('cpu').file_encoder_threads()} ".encode() in output.read_bytes()


def test_annotate_missing_input_is_one_line(tmp_path: Path, tiny_detr_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "stream_detect", "annotate", str(tmp_path / "nope.mp4"), "--output",
         str(tmp_path / "o.mp4"), "--model", str(tiny_detr_dir)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "nope.mp4" in result.stderr


def test_a_decoder_that_ffmpeg_lacks_is_one_config_line() -> None:
    from stream_detect.config import ConfigError, parse_source

    with pytest.raises(ConfigError, match="no decoder 'h264_nosuch'") as caught:
        parse_source({"id": "cam", "path": "in.mp4", "decoder": "h264_nosuch"}, "test")
    assert "\n" not in str(caught.value)


@pytest.mark.timeout(60)
def test_a_named_decoder_decodes_every_frame(tmp_path: Path) -> None:
    from stream_detect.config import FileSource
    from stream_detect.sources import build_source

    source = write_h264(tmp_path / "in.mp4", frames=30, width=160, height=120, rate=25)
    own = list(build_source(FileSource(id="a", path=str(source))).open())
    named = list(build_source(FileSource(id="b", path=str(source), decoder="h264")).open())
    assert len(named) == len(own) == 30
    assert [f.pts for f in named] == [f.pts for f in own]
    assert all((a.image == b.image).all() for a, b in zip(own, named, strict=True))
