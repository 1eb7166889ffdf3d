"""The webcam source's failures name the device without its credentials."""

from __future__ import annotations

import pytest

from stream_detect.errors import SourceOpenError
from stream_detect.sources.webcam import WebcamSource


@pytest.mark.timeout(60)
def test_a_device_url_that_cannot_open_is_named_without_its_password() -> None:
    # OpenCV takes URLs as devices too; nothing listens on port 9 of loopback.
    source = WebcamSource("cam", "http://viewer:webcam-Secret-1@127.0.0.1:9/video?pwd=webcam-Secret-2",
                          read_timeout_s=2)
    with pytest.raises(SourceOpenError) as failed:
        source.open()
    message = str(failed.value)
    assert "127.0.0.1:9" in message
    assert "webcam-Secret-1" not in message and "webcam-Secret-2" not in message
