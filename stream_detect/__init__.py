"""stream-detect: real-time object detection on video streams."""

__version__ = "0.1.0"
