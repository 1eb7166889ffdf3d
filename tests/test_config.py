"""Configuration validation: one clear line naming the key and value."""

from __future__ import annotations

import subprocess
import sys
import time
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


@pytest.mark.parametrize("tokens", [[""], ["  "], ["good-token", ""]])
def test_an_empty_token_is_refused_not_read_as_no_auth(tokens: list[str]) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({"server": {"tokens": tokens}}, origin="test.yaml")
    assert "server.tokens" in str(error.value) and "empty" in str(error.value)
    assert "good-token" not in str(error.value)


@pytest.mark.parametrize(
    "server",
    [{"tokens": [123456789]}, {"tokens": "123456789"}, {"tokens": [" 123456789"]}, {"tokens": [["123456789"]]}],
)
def test_token_values_are_never_shown(server: dict) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({"server": server}, origin="test.yaml")
    assert "server.tokens" in str(error.value)
    assert "123456789" not in str(error.value)


def test_a_stream_id_ending_in_a_newline_is_refused() -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({"sources": [{"kind": "synthetic", "id": "cam\n"}]}, origin="test.yaml")
    assert "\n" not in str(error.value)
    assert "sources.0.id = 'cam\\n'" in str(error.value)


def test_shown_values_hide_query_secrets_and_stay_short() -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({"server": {"public_url": "ftp://viewer:pw-S3cret@cam/?pwd=S3cret2&x=" + "y" * 5000}})
    assert "S3cret" not in str(error.value)
    assert "public_url = 'ftp://***@cam/?pwd=***&x=yyy" in str(error.value)
    assert len(str(error.value).split(": ")[1]) < 200


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


def run_with_config(path: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "stream_detect", "run", "--config", str(path)],
        capture_output=True, text=True, timeout=60,
    )
    return result, time.monotonic() - started


def billion_laughs(levels: int) -> str:
    """Each alias level holds 9 of the previous: a few hundred bytes that expand to 9**levels strings.

    ``!!pairs`` turns the list into tuples, which a naive error message prints whole.
    """
    lines = ['  l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "anchors:\n" + "\n".join(lines) + f"\nmodel:\n  labels: !!pairs [{{x: *l{levels - 1}}}]\n"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("model: " + "[" * 5000 + "]" * 5000 + "\n", "invalid YAML: nested too deeply"),
        ("".join(" " * i + "a:\n" for i in range(1200)), "invalid YAML: nested too deeply"),
        (b"model:\n  id: caf\xe9\n", "line 2: not UTF-8 text (byte 0xe9)"),
        ("server:\n  port: " + "9" * 5000 + "\n", "line 2: invalid YAML: a number has more than 4300 digits"),
        ("model:\n  threshold: !!timestamp 2024-13-01\n", "line 2: invalid YAML: month must be in 1..12"),
        ("model:\n  compile: !!bool maybe\n", "line 2: invalid YAML: not a valid !!bool"),
        ("model:\n  id: a\x07b\n", "line 2: invalid YAML: character #x0007"),
        (billion_laughs(7), "model.labels.0: Input should be a valid string"),
        ("# padding\n" * 120_000, "larger than 1024 KiB"),
        ("server:\n  tokens: ['']\n", "server.tokens: token 0 is empty"),
        ("server:\n  tokens: [123456789]\n", "server.tokens.0 = ***: Input should be a valid string"),
        ("sources:\n  - {kind: synthetic, id: \"cam\\n\"}\n", "sources.0.id = 'cam\\n': a stream id is"),
    ],
    ids=["deep-flow", "deep-block", "not-utf8", "5000-digits", "bad-timestamp", "bad-bool", "control-character",
         "billion-laughs", "over-1MiB", "empty-token", "token-value", "id-with-newline"],
)
def test_cli_bad_config_values_are_one_line_and_exit_2(tmp_path: Path, content: str | bytes, expected: str) -> None:
    path = tmp_path / "hostile.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    result, elapsed = run_with_config(path)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith(f"stream-detect: error: {path}: "), lines[0][:500]
    assert expected in lines[0]
    assert len(lines[0]) < 500 and "123456789" not in lines[0]
    assert elapsed < 20, f"took {elapsed:.1f} s"
