"""Credentials in URLs, query strings and free text come out as ``***``."""

from __future__ import annotations

import time

import pytest

from stream_detect.redact import redact, redact_url, register_secret

SECRET_PARAMETERS = [
    "pwd", "pass", "pw", "password", "passwd", "secret", "apikey", "api_key", "auth", "auth_token",
    "access_token", "token", "sig", "signature", "X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token",
    "jwt", "session", "key",
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A password containing '@': user information ends at the last '@' before the host.
        ("rtsp://admin:p@ss@cam/x", "rtsp://***@cam/x"),
        ("[rtsp @ 0x5581] cannot open 'rtsp://admin:p@ss@cam:554/x': Connection refused",
         "[rtsp @ 0x5581] cannot open 'rtsp://***@cam:554/x': Connection refused"),
        ('{"url": "rtsp://admin:p@ss@cam?x=1"}', '{"url": "rtsp://***@cam?x=1"}'),
        ("rtsp://u:p@ss@cam#frag and rtsp://v:q@w@other/y", "rtsp://***@cam#frag and rtsp://***@other/y"),
        ("http://user.name:p%40ss@127.0.0.1:9/x", "http://***@127.0.0.1:9/x"),
        # Secret query parameters, whatever their case or percent-encoding.
        ("http://cam/401?user=viewer&pwd=SECRET1&apikey=SECRET2", "http://cam/401?user=viewer&pwd=***&apikey=***"),
        ("http://cam/?PWD=a&ApiKey=b&Token=c", "http://cam/?PWD=***&ApiKey=***&Token=***"),
        ("http://cam/?%70wd=a&api%5Fkey=b&X%2DAmz%2DSignature=c", "http://cam/?%70wd=***&api%5Fkey=***&X%2DAmz%2DSignature=***"),
        ("https://b.s3.amazonaws.com/v.mp4?X-Amz-Credential=AKIA%2F1&X-Amz-Date=2024&X-Amz-Security-Token=T",
         "https://b.s3.amazonaws.com/v.mp4?X-Amz-Credential=***&X-Amz-Date=2024&X-Amz-Security-Token=***"),
        ("https://cam/#access_token=abc&state=1", "https://cam/#access_token=***&state=1"),
        ("rtmp://live/app;stream_key=abc", "rtmp://live/app;stream_key=***"),
        ("opening 'http://cam/x?sig=abc' failed", "opening 'http://cam/x?sig=***' failed"),
        ("GET /ws?token=tok-1 HTTP/1.1", "GET /ws?token=*** HTTP/1.1"),
        # Left alone: e-mail addresses, '@' in a path, harmless parameters, empty values.
        ("see admin@example.com", "see admin@example.com"),
        ("rtsp://cam/live@main failed for admin@example.com", "rtsp://cam/live@main failed for admin@example.com"),
        ("'rtsp://cam','a@b'", "'rtsp://cam','a@b'"),
        ("http://cam/?user=viewer&keyframes=1&monkey=2&next=a@b", "http://cam/?user=viewer&keyframes=1&monkey=2&next=a@b"),
        ("http://cam/?pwd=&user=x", "http://cam/?pwd=&user=x"),
    ],
)
def test_redact_free_text(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(expected) == expected


@pytest.mark.parametrize("name", SECRET_PARAMETERS)
def test_every_secret_parameter_name_is_redacted(name: str) -> None:
    for shown in (name, name.upper(), name.lower(), "".join(f"%{ord(c):02X}" for c in name)):
        url = f"http://cam/x?user=viewer&{shown}=S3CRET-value&b=1"
        assert redact(url) == f"http://cam/x?user=viewer&{shown}=***&b=1"
        assert redact_url(url) == f"http://cam/x?user=viewer&{shown}=***&b=1"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("rtsp://admin:p@ss@cam/x", "rtsp://***@cam/x"),
        ("rtsp://admin:p w@cam:554/x?pwd=1&user=u", "rtsp://***@cam:554/x?pwd=***&user=u"),
        ("rtsp://u:p@[::1]:8554/x", "rtsp://***@[::1]:8554/x"),
        ("rtsp://u:p@cam:99999/x", "rtsp://***@cam:99999/x"),
        ("rtsp://u@cam/x", "rtsp://***@cam/x"),
        ("rtsp://cam/x", "rtsp://cam/x"),
        ("/videos/a@b.mp4", "/videos/a@b.mp4"),
        ("http://[::1/x", "http://[::1/x"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_registered_secret_is_removed_raw_and_percent_encoded() -> None:
    register_secret("t0k/en+Secret")
    register_secret("t0k/en")  # a prefix of the other: the longer one must still go whole
    text = "a t0k/en+Secret b t0k%2Fen%2BSecret c t0k/en%2BSecret"
    assert redact(text) == "a *** b *** c ***"


def test_long_text_without_urls_is_redacted_in_linear_time() -> None:
    # A 200,000-letter run (a base64 blob in an error body) once took about a minute.
    text = "a" * 200_000 + " rtsp://u:p@cam/x " + "?b" * 100_000
    started = time.perf_counter()
    cleaned = redact(text)
    assert time.perf_counter() - started < 1.0
    assert "rtsp://***@cam/x" in cleaned
