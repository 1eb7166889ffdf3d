"""Decoding still images safely: allowed formats only, bounded size and pixels.

Pillow only warns about decompression bombs below twice its limit; here any
image over ``max_pixels`` is refused from its header, before decoding, and so
is an image with a side under :data:`MIN_IMAGE_SIDE`.
Every failure is an :class:`~stream_detect.errors.InputError` with one line.

Decoding is two steps, so a caller can decide how much memory a decode may
take before it happens: :func:`open_image` reads and checks the header, then
:meth:`OpenedImage.plan` picks an integer reduction (JPEG decodes at 1/2, 1/4
or 1/8 scale directly, other formats are reduced right after decoding) and
says how many pixels decoding will hold, and :meth:`OpenedImage.decode`
decodes. :func:`decode_image` does all three at full size.
"""

from __future__ import annotations

import ctypes
import io
import struct
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar, cast

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from .errors import ImageTooLargeError, InputError, UnsupportedMediaError

ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF"})
DEFAULT_MAX_PIXELS = 40_000_000
# Nothing a detector can find fits in fewer pixels; and a side of 1 or 3 is what
# image processors take for a channel count when they guess the layout.
MIN_IMAGE_SIDE = 8

_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_SIDES = frozenset({5, 6, 7, 8})
# Modes Image.reduce takes as they are and that are no larger than RGB; others
# (palette, 1-bit, 16-bit, alpha) become RGB first.
_REDUCE_AS_IS = frozenset({"L", "RGB"})

_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, TypeError, IndexError, KeyError, ZeroDivisionError,
                  MemoryError, struct.error)

T = TypeVar("T")


@contextmanager
def _decoding_errors(max_pixels: int) -> Iterator[None]:
    """Turns whatever Pillow raises on bad data into one-line InputErrors."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except InputError:
        raise
    except UnidentifiedImageError:
        raise UnsupportedMediaError(
            f"not an image in an accepted format ({', '.join(sorted(ALLOWED_FORMATS))})"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLargeError(f"image has more pixels than the pixel limit of {max_pixels}") from None
    except _DECODE_ERRORS as error:
        raise InputError(f"cannot decode image: {type(error).__name__}: {error}") from None


def _checked(max_pixels: int, step: Callable[[], T]) -> T:
    with _decoding_errors(max_pixels):
        return step()


class OpenedImage:
    """An image whose header has been read and checked, not yet decoded.

    Attributes:
        width, height: Size of the upright image (EXIF orientation applied).
        format: Pillow's format name (``"PNG"``, ``"JPEG"``...).
    """

    def __init__(self, image: Image.Image, max_pixels: int) -> None:
        self._image = image
        self._max_pixels = max_pixels
        self._raw_size = image.size
        # Read from the header; a PNG's eXIf chunk after its pixel data is only
        # seen once decoded (and then applied, not planned for). Pillow itself
        # gives a TIFF its upright size and turns its pixels upright on loading.
        self._orientation = 1 if image.format == "TIFF" else _orientation(Image.Image.getexif(image))
        width, height = image.size
        self.width, self.height = (height, width) if self._orientation in _SWAPS_SIDES else (width, height)
        self.format = str(image.format)
        self.reduction = 1
        self._at_least: tuple[int, int] | None = None
        self._draft_scale = 1

    def plan(self, at_least: tuple[int, int] | None) -> int:
        """Plans to decode reduced by the largest integer factor that keeps the
        upright image at least ``at_least`` ``(height, width)`` (None: full size).

        Returns:
            The pixels decoding will hold at once: JPEG decodes at 1/2, 1/4 or
            1/8 scale directly; other formats decode at full size, then reduce.
        """
        self._at_least = at_least
        self.reduction = _reduction((self.height, self.width), at_least)
        if self.reduction > 1 and self.format in ("JPEG", "MPO") and self._draft_scale == 1:
            width, height = self._raw_size
            requested = (-(-width // self.reduction), -(-height // self.reduction))
            drafted = _checked(self._max_pixels, lambda: self._image.draft(self._image.mode, requested))
            if drafted is not None:
                self._draft_scale = round(width / drafted[1][2])
        width, height = self._image.size
        return width * height

    def decode(self) -> np.ndarray:
        """Decodes as planned to ``(H, W, 3) uint8`` RGB, upright per EXIF.

        Raises:
            InputError: a truncated or otherwise broken image.
        """
        return _checked(self._max_pixels, self._decode)

    def _decode(self) -> np.ndarray:
        image = self._image
        image.seek(0)  # GIF, TIFF: the first frame
        image.load()
        orientation = self._orientation
        if orientation == 1 and "exif" in image.info and self.format == "PNG":
            late = Image.Exif()  # the header's Exif is cached: read the chunk found while decoding
            late.load(image.info["exif"])
            orientation = _orientation(late)
            if orientation in _SWAPS_SIDES:
                self.width, self.height = self.height, self.width
        # After a JPEG draft at 1/s scale, what is left to reduce by: from the drafted size.
        upright = image.size[::-1] if orientation not in _SWAPS_SIDES else image.size
        remaining = _reduction(upright, self._at_least) if self.reduction > 1 else 1
        if remaining > 1:
            if image.mode not in _REDUCE_AS_IS:
                image = image.convert("RGB")
            image = image.reduce(remaining)
        if image.mode != "RGB":
            image = image.convert("RGB")
        method = _TRANSPOSE.get(orientation)
        if method is not None:
            image = image.transpose(method)
        pixels = np.array(image, dtype=np.uint8)  # a writable copy: torch warns on read-only arrays
        self._image.close()  # the full-size pixels go now, not when the caller drops this object
        return pixels


def _reduction(size: tuple[int, int], at_least: tuple[int, int] | None) -> int:
    """The largest integer factor that keeps ``size`` at least ``at_least`` (both ``(height, width)``)."""
    if at_least is None:
        return 1
    return max(1, min(size[0] // max(1, at_least[0]), size[1] // max(1, at_least[1])))


def _orientation(exif: Image.Exif) -> int:
    value = exif.get(ExifTags.Base.Orientation, 1)
    return value if isinstance(value, int) and value in _TRANSPOSE else 1


def open_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int = MIN_IMAGE_SIDE) -> OpenedImage:
    """Reads and checks an image's header; nothing is decoded yet.

    Raises:
        UnsupportedMediaError: not an image, or a format outside ALLOWED_FORMATS.
        ImageTooLargeError: more than ``max_pixels`` pixels.
        InputError: a side shorter than ``min_side`` pixels, or a broken header.
    """
    if not data:
        raise InputError("empty image")

    def read_header() -> OpenedImage:
        image = Image.open(io.BytesIO(data), formats=sorted(ALLOWED_FORMATS))
        width, height = image.size
        if width * height > max_pixels:
            raise ImageTooLargeError(
                f"image is {width}x{height} pixels, more than the pixel limit of {max_pixels}"
            )
        if min(width, height) < min_side:
            raise InputError(f"image is {width}x{height} pixels; each side must be at least {min_side} pixels")
        return OpenedImage(image, max_pixels)

    return _checked(max_pixels, read_header)


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decodes image bytes to ``(H, W, 3) uint8`` RGB at full size, upright per EXIF.

    Raises:
        UnsupportedMediaError: not an image, or a format outside ALLOWED_FORMATS.
        ImageTooLargeError: more than ``max_pixels`` pixels.
        InputError: a side under MIN_IMAGE_SIDE, or a truncated or otherwise broken image.
    """
    opened = open_image(data, max_pixels)
    opened.plan(None)
    return opened.decode()


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


def _load_malloc_trim() -> Callable[[int], int] | None:
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc: its allocator gives memory back its own way
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return cast("Callable[[int], int]", trim)


_MALLOC_TRIM = _load_malloc_trim()


def give_back_freed_memory() -> None:
    """Returns freed heap pages to the system (glibc's ``malloc_trim``; a no-op elsewhere).

    Pillow allocates a decoded image in 16 MB blocks, under glibc's mmap
    threshold once that has grown, so a freed image stays in the heap: after
    sixteen 6000x6000 PNGs a ``stream-detect run`` process stayed 290 MB above
    its resident size before them. Trimming after each large decode and after
    its answer (5-18 ms a call there) brought it back to within 40 MB, and
    lowered the peak from +300 MB to +170 MB.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
