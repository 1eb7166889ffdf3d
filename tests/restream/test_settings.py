"""``restream:`` settings: validated on load, one line naming the key."""

from __future__ import annotations

import pytest

from stream_detect.config import parse_config
from stream_detect.errors import ConfigError


def source(**restream: object) -> dict[str, object]:
    return {"sources": [{"id": "cam", "graph": "testsrc2", "restream": restream}]}


def test_a_source_takes_an_rtsp_url_and_hls() -> None:
    config = parse_config(source(rtsp="rtsp://user:secret@127.0.0.1:8554/annotated", hls=True))
    restream = config.sources[0].restream
    assert restream is not None and restream.enabled and restream.hls
    assert restream.rtsp == "rtsp://user:secret@127.0.0.1:8554/annotated"
    assert parse_config({"sources": [{"id": "cam", "graph": "testsrc2"}]}).sources[0].restream is None


@pytest.mark.parametrize(("restream", "named"), [
    ({"rtsp": "http://127.0.0.1/cam"}, "restream.rtsp"),
    ({"rtsp": "rtsp:///nohost"}, "restream.rtsp"),
    ({"hls": "sometimes"}, "restream.hls"),
    ({"hsl": True}, "restream.hsl"),
    ({"hls": True, "hls_segments": 1}, "restream.hls_segments"),
    ({"encoder": "quicksync"}, "restream.encoder"),
])
def test_a_wrong_key_or_value_is_one_line_naming_it(restream: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(source(**restream))
    message = str(raised.value)
    assert "\n" not in message and named in message, message


def test_credentials_in_the_rtsp_url_are_not_shown_in_errors() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(source(rtsp="rtsp://admin:hunter22@cam.example:0/x"))
    assert "hunter22" not in str(raised.value)
