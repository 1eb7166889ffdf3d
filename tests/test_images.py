"""Still-image decoding: allowed formats, limits, one clear error each."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from stream_detect.errors import ImageTooLargeError, InputError, UnsupportedMediaError
from stream_detect.images import decode_image


def encode(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF"])
def test_allowed_formats_decode_to_rgb(fmt: str) -> None:
    image = Image.new("RGB", (40, 30), (200, 10, 10))
    array = decode_image(encode(image, fmt))
    assert array.shape == (30, 40, 3) and array.dtype == np.uint8
    assert array[15, 20, 0] > 150


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90
    array = decode_image(encode(image, "JPEG", exif=exif))
    assert array.shape == (40, 20, 3)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims a size; no pixel data worth decoding."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_pixel_bomb_is_refused_from_the_header() -> None:
    with pytest.raises(ImageTooLargeError, match="pixel limit of 10000000"):
        decode_image(png_header_only(50_000, 50_000), max_pixels=10_000_000)
    with pytest.raises(ImageTooLargeError, match="3000x3000 pixels"):
        decode_image(png_header_only(3000, 3000), max_pixels=1_000_000)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", InputError),
        (b"hello, not an image", UnsupportedMediaError),
        (b"%PDF-1.4\n", UnsupportedMediaError),
    ],
)
def test_bad_bytes_raise_input_errors(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        decode_image(data)


def test_truncated_image_is_an_input_error() -> None:
    data = encode(Image.effect_noise((64, 64), 50).convert("RGB"), "PNG")
    with pytest.raises(InputError):
        decode_image(data[: len(data) // 2])


def test_disallowed_format_is_unsupported() -> None:
    data = encode(Image.new("RGB", (8, 8)), "ICO")
    with pytest.raises(UnsupportedMediaError):
        decode_image(data)
