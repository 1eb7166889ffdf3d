"""Configuration validation: one clear line naming the key and value."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stream_detect.config import (
    FileSource,
    LavfiSource,
    UrlSource,
    drop_policy,
    load_config,
    parse_config,
    source_from_url,
)
from stream_detect.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_example_config_is_valid() -> None:
    config = load_config(REPO / "configs" / "example.yaml")
    assert [s.id for s in config.sources] == ["front-door", "test-pattern", "archive"]
    assert isinstance(config.sources[0], UrlSource)
    assert drop_policy(config.sources[0]) == "drop_oldest"
    assert drop_policy(config.sources[2]) == "drop_oldest"  # realtime file behaves like a camera


def test_files_block_and_live_drop() -> None:
    config = parse_config({"sources": [{"kind": "file", "id": "f", "path": "a.mp4"}]})
    assert drop_policy(config.sources[0]) == "block"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"modle": {}}, "unknown key 'modle'"),
        ({"model": {"threshold": 1.5}}, "model.threshold = 1.5"),
        ({"model": {"device": "gpu"}}, "model.device = 'gpu'"),
        ({"sources": [{"kind": "rtsp", "id": "a"}]}, "sources.0"),
        ({"sources": [{"kind": "url", "id": "a", "url": "x", "colour": 1}]}, "unknown key 'sources.0.colour'"),
        ({"sources": [{"kind": "file", "id": "a", "path": "x"}, {"kind": "file", "id": "a", "path": "y"}]},
         "duplicate stream id 'a'"),
        ({"server": {"port": 70000}}, "server.port = 70000"),
    ],
)
def test_bad_values_name_key_and_value(data: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(data, origin="test.yaml")
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("test.yaml: ")
    assert expected in message


def test_bad_value_hides_credentials() -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({"sources": [{"kind": "url", "id": "a b", "url": "rtsp://u:secret@h/x"}]})
    assert "secret" not in str(error.value)


def test_source_kind_is_guessed_from_the_argument() -> None:
    assert source_from_url("rtsp://h/x", "cam1")["kind"] == "url"
    assert source_from_url("lavfi:testsrc2", "cam1") == {"kind": "lavfi", "id": "cam1", "graph": "testsrc2"}
    assert source_from_url("/dev/video2", "cam1")["kind"] == "webcam"
    assert source_from_url("0", "cam1")["device"] == 0
    assert source_from_url("clip.mp4", "cam1")["kind"] == "file"
    config = parse_config({"sources": [source_from_url("lavfi:testsrc2", "c"), source_from_url("a.mp4", "d")]})
    assert isinstance(config.sources[0], LavfiSource)
    assert isinstance(config.sources[1], FileSource)


def test_cli_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  threshold: high\n")
    result = subprocess.run(
        [sys.executable, "-m", "stream_detect", "run", "--config", str(path)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "model.threshold = 'high'" in lines[0]
    assert str(path) in lines[0]


def test_cli_missing_config_and_bad_yaml(tmp_path: Path) -> None:
    missing = subprocess.run(
        [sys.executable, "-m", "stream_detect", "run", "--config", str(tmp_path / "nope.yaml")],
        capture_output=True, text=True, timeout=60,
    )
    assert missing.returncode == 2 and "nope.yaml" in missing.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [unclosed\n")
    result = subprocess.run(
        [sys.executable, "-m", "stream_detect", "run", "--config", str(broken)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "invalid YAML" in result.stderr
