"""Decoding still images safely: allowed formats only, bounded size and pixels.

Pillow only warns about decompression bombs below twice its limit; here any
image over ``max_pixels`` is refused from its header, before decoding.
Every failure is an :class:`~stream_detect.errors.InputError` with one line.
"""

from __future__ import annotations

import io
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageTooLargeError, InputError, UnsupportedMediaError

ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF"})
DEFAULT_MAX_PIXELS = 40_000_000


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decodes image bytes to ``(H, W, 3) uint8`` RGB, upright per EXIF.

    Raises:
        UnsupportedMediaError: not an image, or a format outside ALLOWED_FORMATS.
        ImageTooLargeError: more than ``max_pixels`` pixels.
        InputError: a truncated or otherwise broken image.
    """
    if not data:
        raise InputError("empty image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=sorted(ALLOWED_FORMATS))
            width, height = image.size
            if width < 1 or height < 1:
                raise InputError(f"image has no pixels ({width}x{height})")
            if width * height > max_pixels:
                raise ImageTooLargeError(
                    f"image is {width}x{height} pixels, more than the pixel limit of {max_pixels}"
                )
            image.seek(0)  # GIF, TIFF: the first frame
            image.load()
            upright = ImageOps.exif_transpose(image) or image
            rgb = upright.convert("RGB")
    except InputError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        if isinstance(error, UnidentifiedImageError):
            raise UnsupportedMediaError(
                f"not an image in an accepted format ({', '.join(sorted(ALLOWED_FORMATS))})"
            ) from None
        raise ImageTooLargeError(f"image has more pixels than the pixel limit of {max_pixels}") from None
    except (OSError, SyntaxError, ValueError, EOFError, TypeError, IndexError, KeyError,
            ZeroDivisionError, MemoryError, struct.error) as error:
        raise InputError(f"cannot decode image: {type(error).__name__}: {error}") from None
    return np.array(rgb, dtype=np.uint8)  # a writable copy: torch warns on read-only arrays


def decode_image_file(path: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Reads and decodes an image file; errors name the path."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise InputError(f"cannot read image {path!r}: {error.strerror}") from None
    try:
        return decode_image(data, max_pixels)
    except InputError as error:
        raise type(error)(f"{path}: {error}") from None
