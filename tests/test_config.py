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
    SyntheticSource,
    UrlSource,
    WebcamSource,
    drop_policy,
    load_config,
    parse_config,
    parse_source,
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


@pytest.mark.parametrize(
    ("entry", "kind", "fields"),
    [
        ({"url": "rtsp://cam.local/stream1"}, UrlSource, {"url": "rtsp://cam.local/stream1"}),
        ({"url": "rtmp://h/live", "rtsp_transport": "udp"}, UrlSource, {"url": "rtmp://h/live"}),
        ({"url": "https://h/index.m3u8"}, UrlSource, {"url": "https://h/index.m3u8"}),
        ({"url": "lavfi:testsrc2=size=320x240", "realtime": False}, LavfiSource,
         {"graph": "testsrc2=size=320x240", "realtime": False}),
        ({"url": "2"}, WebcamSource, {"device": 2}),
        ({"url": 0}, WebcamSource, {"device": 0}),
        ({"url": "/dev/video1", "width": 640}, WebcamSource, {"device": "/dev/video1", "width": 640}),
        ({"url": "synthetic", "seed": 3}, SyntheticSource, {"seed": 3}),
        ({"url": "clips/a.mp4", "loop": True}, FileSource, {"path": "clips/a.mp4", "loop": True}),
        ({"url": "file:///data/a.mp4"}, FileSource, {"path": "/data/a.mp4"}),
        ({"path": "a.mp4", "realtime": True}, FileSource, {"path": "a.mp4", "realtime": True}),
        ({"graph": "testsrc2"}, LavfiSource, {"graph": "testsrc2"}),
        ({"device": "/dev/video0"}, WebcamSource, {"device": "/dev/video0"}),
        ({"device": 1, "fps": 30}, WebcamSource, {"device": 1, "fps": 30}),
    ],
    ids=["rtsp", "rtmp", "https", "url-lavfi", "url-index", "url-index-number", "url-dev-video", "url-synthetic",
         "url-file", "url-file-scheme", "path", "graph", "device", "device-index"],
)
def test_a_source_without_kind_gets_the_kind_its_keys_tell(entry: dict, kind: type, fields: dict) -> None:
    source = parse_config({"sources": [{"id": "cam", **entry}]}).sources[0]
    assert type(source) is kind
    assert source.id == "cam"
    assert {name: getattr(source, name) for name in fields} == fields
    assert parse_source({"id": "cam", **entry}, origin="request") == source


def test_a_url_is_guessed_the_same_in_an_entry_and_on_the_command_line() -> None:
    for url in ("rtsp://h/x", "lavfi:testsrc2", "synthetic", "0", "/dev/video3", "a.mp4", "file://b.mp4"):
        from_entry = parse_source({"id": "cam", "url": url}, origin="request")
        assert from_entry == parse_source(source_from_url(url, "cam"), origin="command line")


@pytest.mark.parametrize(
    "entry",
    [
        {"url": "rtsp://x"},
        {"url": "lavfi:testsrc2"},
        {"url": "synthetic"},
        {"url": "0"},
        {"url": "a.mp4"},
        {"path": "a.mp4"},
        {"graph": "testsrc2"},
        {"device": 0},
    ],
    ids=["url", "url-lavfi", "url-synthetic", "url-webcam", "url-file", "path", "graph", "device"],
)
def test_a_misspelt_key_of_a_guessed_kind_is_named(entry: dict) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({"sources": [{"id": "cam", **entry, "colour_of_sky": "blue"}]}, origin="config.yaml")
    assert str(error.value) == "config.yaml: unknown key 'sources.0.colour_of_sky'"


def test_a_source_whose_keys_tell_no_kind_says_which_keys_would() -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({"sources": [{"id": "cam", "colour": "blue"}]}, origin="config.yaml")
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("config.yaml: sources.0: cannot guess the source's kind")
    assert "url, path, graph, device, or kind" in message


def test_a_synthetic_source_needs_its_kind() -> None:
    with pytest.raises(ConfigError, match="cannot guess the source's kind"):
        parse_config({"sources": [{"id": "cam", "seed": 3, "frames": 10}]})
    assert isinstance(parse_config({"sources": [{"kind": "synthetic", "id": "cam"}]}).sources[0], SyntheticSource)


def test_keys_of_two_kinds_are_not_guessed_between() -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({"sources": [{"id": "cam", "url": "rtsp://x", "path": "a.mp4"}]}, origin="config.yaml")
    assert str(error.value) == ("config.yaml: sources.0: cannot guess the source's kind: 'url' and 'path' "
                                "are given together; keep one, or set kind")


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        ({"kind": "file", "url": "rtsp://x"}, "url"),
        ({"kind": "url", "path": "a.mp4"}, "path"),
        ({"kind": "lavfi", "device": 0}, "device"),
        ({"kind": "file", "pth": "a.mp4"}, "pth"),
    ],
)
def test_an_explicit_kind_wins_and_names_the_key_it_does_not_take(entry: dict, key: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({"sources": [{"id": "cam", **entry}]}, origin="config.yaml")
    assert str(error.value) == f"config.yaml: unknown key 'sources.0.{key}'"


def test_an_explicit_kind_that_matches_no_source_is_still_refused() -> None:
    with pytest.raises(ConfigError, match=r"sources\.0: .*'rtsp'"):
        parse_config({"sources": [{"kind": "rtsp", "id": "cam", "url": "rtsp://x"}]})


def test_guessing_leaves_the_entry_unchanged() -> None:
    entry = {"id": "cam", "url": "lavfi:testsrc2"}
    parse_config({"sources": [entry]})
    assert entry == {"id": "cam", "url": "lavfi:testsrc2"}


def test_a_guessed_kind_survives_the_command_line_round_trip() -> None:
    config = parse_config({"sources": [{"id": "a", "url": "lavfi:testsrc2"}, {"id": "b", "path": "x.mp4"}]})
    assert parse_config(config.model_dump(mode="python", exclude_unset=True)) == config


def test_parse_source_validates_one_entry_with_keys_relative_to_it() -> None:
    assert parse_source({"id": "cam", "url": "rtsp://h/x"}, origin="POST /streams") == UrlSource(
        id="cam", url="rtsp://h/x"
    )
    assert isinstance(parse_source({"kind": "synthetic", "id": "cam"}, origin="POST /streams"), SyntheticSource)
    cases = [
        ({"id": "cam", "url": "rtsp://h/x", "colour_of_sky": "blue"}, "POST /streams: unknown key 'colour_of_sky'"),
        ({"kind": "file", "id": "cam", "url": "rtsp://h/x"}, "POST /streams: unknown key 'url'"),
        ({"id": "cam", "url": "rtsp://h/x", "reconnect": {"max_s": 0}},
         "POST /streams: reconnect.max_s = 0: Input should be greater than 0"),
        ({"id": "a b", "url": "rtsp://u:secret@h/x"}, "POST /streams: id = 'a b': a stream id is"),
        ({"id": "cam"}, "POST /streams: (top level): cannot guess the source's kind"),
        ("rtsp://h/x", "POST /streams: (top level) = 'rtsp://h/x': Input should be a valid dictionary"),
    ]
    for data, expected in cases:
        with pytest.raises(ConfigError) as error:
            parse_source(data, origin="POST /streams")
        assert str(error.value).startswith(expected), str(error.value)
        assert "\n" not in str(error.value) and "secret" not in str(error.value)


def test_a_config_file_may_leave_kinds_out(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("sources:\n  - {id: door, url: 'rtsp://cam.local/1'}\n  - {id: pattern, url: 'lavfi:testsrc2'}\n"
                    "  - {id: usb, url: 0}\n  - {id: archive, path: a.mp4, loop: true}\n")
    kinds = [type(source) for source in load_config(path).sources]
    assert kinds == [UrlSource, LavfiSource, WebcamSource, FileSource]
    path.write_text("sources:\n  - {id: cam, url: 'rtsp://x', colour_of_sky: blue}\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value) == f"{path}: unknown key 'sources.0.colour_of_sky'"


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
