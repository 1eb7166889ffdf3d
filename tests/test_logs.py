"""Logging: identical warnings folded into one line with a count, credentials redacted."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from stream_detect.logs import RedactingFilter, RepeatFilter, setup_logging


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO, Clock]]:
    """A logger writing through a repeat filter (60 s window, fake clock) and the redacting filter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    clock = Clock()
    handler.addFilter(RepeatFilter(handler, window_s=60, max_messages=50, clock=clock))
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("test.repeats")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    try:
        yield logger, stream, clock
    finally:
        logger.handlers.clear()
        logger.propagate = True


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_identical_warnings_pass_once_then_come_back_with_their_count(
        logged: tuple[logging.Logger, io.StringIO, Clock]) -> None:
    logger, stream, clock = logged
    for _ in range(200):
        logger.warning("inference request refused (%d): %s", 400, "image is 640x1 pixels")
        clock.now += 0.1
    logger.warning("inference request refused (%d): %s", 400, "image is 1x1 pixels")  # another message
    assert lines(stream) == ["WARNING test.repeats: inference request refused (400): image is 640x1 pixels",
                             "WARNING test.repeats: inference request refused (400): image is 1x1 pixels"]
    clock.now += 45  # 65 s after the first
    logger.warning("inference request refused (%d): %s", 400, "image is 640x1 pixels")
    assert lines(stream)[2:] == [
        "WARNING test.repeats: inference request refused (400): image is 640x1 pixels [and 199 more like it in 65 s]"]
    logger.warning("inference request refused (%d): %s", 400, "image is 640x1 pixels")
    assert len(lines(stream)) == 3, "a new window opened with the line that reported the count"


def test_a_count_whose_window_closed_is_reported_by_the_next_record(
        logged: tuple[logging.Logger, io.StringIO, Clock]) -> None:
    logger, stream, clock = logged
    for _ in range(5):
        logger.error("lane api: the detector failed on a 640x1 image: RuntimeError: shape mismatch")
    clock.now += 61
    logger.info("stream cam1 running")
    assert lines(stream) == [
        "ERROR test.repeats: lane api: the detector failed on a 640x1 image: RuntimeError: shape mismatch",
        "ERROR test.repeats: lane api: the detector failed on a 640x1 image: RuntimeError: shape mismatch "
        "[repeated 4 more times in 61 s]",
        "INFO test.repeats: stream cam1 running",
    ]


def test_info_records_and_different_errors_are_never_folded(
        logged: tuple[logging.Logger, io.StringIO, Clock]) -> None:
    logger, stream, _ = logged
    for _ in range(3):
        logger.info("frame received")
    for error in (ValueError("a"), ValueError("a"), KeyError("b")):
        try:
            raise error
        except Exception:
            logger.exception("delivering failed")
    text = stream.getvalue()
    assert text.count("INFO test.repeats: frame received") == 3
    assert text.count("ERROR test.repeats: delivering failed") == 2, "ValueError once, KeyError once"
    assert text.count("Traceback") == 2


def test_remembered_messages_are_bounded_and_counts_are_redacted(
        logged: tuple[logging.Logger, io.StringIO, Clock]) -> None:
    logger, stream, clock = logged
    repeat = logging.getLogger("test.repeats").handlers[0].filters[0]
    assert isinstance(repeat, RepeatFilter)
    for i in range(500):
        logger.warning("camera %d unreachable", i)
    assert len(repeat._seen) == 50, "the oldest messages are forgotten"
    logger.warning("cannot open rtsp://admin:hunter2@10.0.0.5/stream")
    logger.warning("cannot open rtsp://admin:hunter2@10.0.0.5/stream")
    clock.now += 61
    logger.warning("something else")
    assert "hunter2" not in stream.getvalue()
    assert "[repeated 1 more times in 61 s]" in stream.getvalue()


def test_setup_logging_folds_repeats_of_every_logger(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("INFO")
        for _ in range(200):
            logging.getLogger("uvicorn.error").error("Exception in ASGI application")
            logging.getLogger("stream_detect.server.inference_api").warning("inference request refused (400): x")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2, err
