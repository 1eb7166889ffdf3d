"""Still-image decoding: allowed formats, limits, one clear error each."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from stream_detect.errors import ImageTooLargeError, InputError, UnsupportedMediaError
from stream_detect.images import decode_image, open_image


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


@pytest.mark.parametrize("size", [(640, 1), (1, 1), (640, 3), (3, 640), (7, 500)])
def test_images_with_a_side_under_the_minimum_are_refused_from_the_header(size: tuple[int, int]) -> None:
    with pytest.raises(InputError, match=f"image is {size[0]}x{size[1]} pixels; each side must be at least 8"):
        open_image(encode(Image.new("RGB", size), "PNG"))
    assert decode_image(encode(Image.new("RGB", (8, 8)), "PNG")).shape == (8, 8, 3)


def gradient(width: int, height: int) -> Image.Image:
    """Smooth content whose every region differs, so a misplaced or misscaled pixel shows."""
    ys, xs = np.mgrid[0:height, 0:width]
    rgb = np.stack([xs * 255 // width, ys * 255 // height, (xs + ys) * 255 // (width + height)], axis=2)
    return Image.fromarray(rgb.astype(np.uint8))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF"])
def test_a_large_image_decodes_reduced_to_no_less_than_the_model_input(fmt: str) -> None:
    original = gradient(3000, 2000)
    data = encode(original, fmt)
    opened = open_image(data)
    assert (opened.width, opened.height) == (3000, 2000)
    decoding = opened.plan((192, 320))  # the demo model's input
    image = opened.decode()
    height, width = image.shape[:2]
    assert height >= 192 and width >= 320, "never below the model's input"
    assert opened.reduction == 9 and height < 2 * 192 + 9, "by the largest factor that keeps it so: 2000 // 192"
    if fmt == "JPEG":
        assert decoding == 375 * 250, "decoded at 1/8 scale by libjpeg, never at full size"
        assert (width, height) == (375, 250)
    else:
        assert decoding == 3000 * 2000
        assert (width, height) == (334, 223)  # ceil(3000 / 9), ceil(2000 / 9)
    expected = np.asarray(original.resize((width, height), Image.BILINEAR), np.int16)
    assert np.abs(image.astype(np.int16) - expected).mean() < 6, "the same picture, smaller"


def test_a_reduced_decode_is_upright_and_planned_on_the_upright_size() -> None:
    original = gradient(2000, 1200)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: upright it is 1200 wide, 2000 high
    for fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
        data = encode(original, fmt, exif=exif)
        opened = open_image(data)
        assert (opened.width, opened.height) == (1200, 2000), fmt
        opened.plan((320, 192))
        reduced = opened.decode()
        full = decode_image(data)
        assert full.shape == (2000, 1200, 3), fmt
        assert reduced.shape[0] >= 320 and reduced.shape[1] >= 192, fmt
        expected = np.asarray(Image.fromarray(full).resize(reduced.shape[1::-1], Image.BILINEAR), np.int16)
        assert np.abs(reduced.astype(np.int16) - expected).mean() < 6, fmt
