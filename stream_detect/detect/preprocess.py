"""Image preprocessing in torch, on the device the model runs on.

What DETR-family image processors do (resize keeping the aspect ratio,
rescale and normalise, pad a batch to its largest image with a pixel mask),
done directly on tensors: no PIL image, no per-call validation, and the
resize runs where the model runs. The arithmetic follows transformers'
torchvision backend (bilinear resize with antialiasing on ``uint8``, then
fused rescale and normalise, zero padding), so the pixels equal the
processor's within float rounding (a test checks it).

With ``channels_last`` the batch is laid out NHWC, what a channels_last
model wants, so the backend copies nothing. Processors of other families fall
back to the checkpoint's own processor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torchvision.transforms.v2 import functional as tvF

from .device import Device

# Processors whose preprocessing is exactly resize -> rescale/normalise -> pad.
SUPPORTED_PROCESSORS = frozenset({
    "DetrImageProcessor", "DetrImageProcessorFast",
    "ConditionalDetrImageProcessor", "ConditionalDetrImageProcessorFast",
    "DeformableDetrImageProcessor", "DeformableDetrImageProcessorFast",
})

_INTERPOLATION = {
    0: tvF.InterpolationMode.NEAREST,
    2: tvF.InterpolationMode.BILINEAR,
    3: tvF.InterpolationMode.BICUBIC,
}


@dataclass(frozen=True)
class ModelInputs:
    """A preprocessed batch.

    Attributes:
        pixel_values: ``(B, 3, H, W) float32`` normalised pixels, zero padded.
        pixel_mask: ``(B, H, W) int64``: 1 on image pixels, 0 on padding.
    """

    pixel_values: torch.Tensor
    pixel_mask: torch.Tensor


def resized_size(height: int, width: int, size: dict[str, int]) -> tuple[int, int]:
    """The ``(height, width)`` a DETR processor resizes an image to, for its ``size`` setting."""
    shortest, longest = size.get("shortest_edge"), size.get("longest_edge")
    if shortest and longest:
        return _size_with_aspect_ratio(height, width, shortest, longest)
    if size.get("max_height") and size.get("max_width"):
        scale = min(size["max_height"] / height, size["max_width"] / width)
        return int(height * scale), int(width * scale)
    if size.get("height") and size.get("width"):
        return size["height"], size["width"]
    raise ValueError(f"unsupported processor size {size!r}")


def _size_with_aspect_ratio(height: int, width: int, shortest: int, longest: int) -> tuple[int, int]:
    # transformers.image_transforms.get_size_with_aspect_ratio, integer for integer.
    raw: float | None = None
    small, large = float(min(height, width)), float(max(height, width))
    if large / small * shortest > longest:
        raw = longest * small / large
        shortest = round(raw)
    if (height <= width and height == shortest) or (width <= height and width == shortest):
        return height, width
    if width < height:
        return (int(raw * height / width) if raw is not None else int(shortest * height / width)), shortest
    return shortest, (int(raw * width / height) if raw is not None else int(shortest * width / height))


_SIZE_KEYS = ("shortest_edge", "longest_edge", "height", "width", "max_height", "max_width")


def processor_size(processor: Any) -> dict[str, int]:
    """A processor's ``size`` setting as a plain dict (transformers 5 keeps a ``SizeDict``)."""
    size = processor.size
    values = {key: (size.get(key) if isinstance(size, dict) else getattr(size, key, None)) for key in _SIZE_KEYS}
    return {key: int(value) for key, value in values.items() if value}


def fixed_input_size(processor: Any) -> tuple[int, int] | None:
    """``(height, width)`` when the processor resizes every image to one size (RT-DETR), else None."""
    size = processor_size(processor)
    if "shortest_edge" in size or not (size.get("height") and size.get("width")):
        return None
    return size["height"], size["width"]


class TorchPreprocessor:
    """A DETR processor's preprocessing as tensor operations on ``device``.

    Use :meth:`from_processor`; it returns None for processors this class
    does not reproduce.
    """

    def __init__(self, size: dict[str, int], mean: Sequence[float], std: Sequence[float], rescale_factor: float,
                 interpolation: tvF.InterpolationMode, device: Device, channels_last: bool = False) -> None:
        self.size = dict(size)
        self.device = device
        self.interpolation = interpolation
        self.channels_last = channels_last
        target = device.torch_device
        # Rescale and normalise fused into one multiply-add: x * scale + shift.
        std_pixels = torch.tensor(std, dtype=torch.float64) / rescale_factor
        mean_pixels = torch.tensor(mean, dtype=torch.float64) / rescale_factor
        self._scale = (1 / std_pixels).float().view(1, 3, 1, 1).to(target)
        self._shift = (-mean_pixels / std_pixels).float().view(1, 3, 1, 1).to(target)

    @classmethod
    def from_processor(cls, processor: Any, device: Device, channels_last: bool = False) -> TorchPreprocessor | None:
        """Reads the settings of a DETR-family processor; None if it does something else."""
        if type(processor).__name__ not in SUPPORTED_PROCESSORS:
            return None
        flags = (getattr(processor, name, None) for name in ("do_resize", "do_rescale", "do_normalize"))
        if not all(flag is True for flag in flags) or getattr(processor, "do_pad", True) is not True:
            return None
        if getattr(processor, "pad_size", None) or getattr(processor, "do_convert_rgb", False):
            return None
        size = processor_size(processor)
        interpolation = _INTERPOLATION.get(int(getattr(processor, "resample", 2) or 2))
        if interpolation is None:
            return None
        try:
            resized_size(100, 200, size)
        except ValueError:
            return None
        return cls(size, processor.image_mean, processor.image_std, processor.rescale_factor, interpolation, device,
                   channels_last)

    def __call__(self, images: Sequence[np.ndarray]) -> ModelInputs:
        """Preprocesses ``(H, W, 3) uint8`` RGB images; sizes may differ (the batch is padded)."""
        resized = [self._resize(image) for image in images]
        height = max(t.shape[-2] for t in resized)
        width = max(t.shape[-1] for t in resized)
        padded = any(t.shape[-2:] != (height, width) for t in resized)
        target = self.device.torch_device
        shape = (len(images), 3, height, width)
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        allocate = torch.zeros if padded else torch.empty
        pixel_values = allocate(shape, dtype=torch.float32, device=target).contiguous(memory_format=memory_format)
        pixel_mask = allocate((len(images), height, width), dtype=torch.int64, device=target)
        for index, tensor in enumerate(resized):
            h, w = tensor.shape[-2:]
            pixel_values[index, :, :h, :w].copy_(tensor)
            pixel_mask[index, :h, :w] = 1
        pixel_values.mul_(self._scale).add_(self._shift)  # (x - mean) / std, fused
        if padded:
            pixel_values.mul_(pixel_mask.unsqueeze(1))  # padding is zero after normalising
        return ModelInputs(pixel_values, pixel_mask)

    def _resize(self, image: np.ndarray) -> torch.Tensor:
        height, width = image.shape[:2]
        new_size = resized_size(height, width, self.size)
        chw = self.device.host_to_device(torch.from_numpy(np.ascontiguousarray(image))).permute(2, 0, 1)
        if not self.device.is_cuda:
            # uint8 in, uint8 out: transformers resizes the uint8 tensor the same way.
            # A (3, H, W) view of the (H, W, 3) array: torchvision's uint8 kernel is fastest on it.
            return tvF.resize(chw, list(new_size), interpolation=self.interpolation, antialias=True)
        chw = chw.float()
        resized = tvF.resize(chw, list(new_size), interpolation=self.interpolation, antialias=True)
        return resized.round_().clamp_(0, 255)
