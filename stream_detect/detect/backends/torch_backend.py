"""The torch backend: eager, channels_last, autocast, optionally compiled."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import torch

from ...errors import ModelError
from ..device import Device
from ..preprocess import ModelInputs
from . import BackendOptions, RawOutputs, loaded
from .export import DetectionModule

log = logging.getLogger(__name__)

# Distinct input shapes a compiled model keeps graphs for (dynamo's default is 8).
COMPILED_SHAPES = 64


class TorchBackend:
    """Runs the transformers model with torch on ``device``.

    The weights stay in fp32 except on CUDA with precision ``auto`` (fp16
    weights, as before); bf16/fp16 elsewhere use autocast, which keeps
    numerically sensitive ops (softmax, norms) in fp32.
    """

    kind = "torch"

    def __init__(self, model: Any, device: Device, options: BackendOptions) -> None:
        model = loaded(model)
        self.device = device
        self.compute_dtype = device.compute_dtype(options.precision)
        self.channels_last = options.channels_last and device.type in ("cpu", "cuda")
        weights_dtype = torch.float16 if device.is_cuda and options.precision == "auto" else torch.float32
        model.to(device.torch_device, dtype=weights_dtype)
        model.to(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
        self.weights_dtype = weights_dtype
        self.module: Any = DetectionModule(model).eval()
        self.compiled = options.compile
        if options.compile:
            from torch._dynamo import config as dynamo_config

            dynamo_config.cache_size_limit = max(dynamo_config.cache_size_limit, COMPILED_SHAPES)
            try:
                self.module = torch.compile(self.module, dynamic=False)
            except RuntimeError as error:
                raise ModelError(f"torch.compile failed: {error}") from None
        parts = ["torch", _short(self.compute_dtype)]
        if self.channels_last:
            parts.append("channels_last")
        if options.compile:
            parts.append("compiled")
        self.name = " ".join(parts)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.compute_dtype == self.weights_dtype:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.compute_dtype)

    @torch.inference_mode()
    def __call__(self, inputs: ModelInputs) -> RawOutputs:
        pixel_values = inputs.pixel_values.to(self.weights_dtype)
        if self.channels_last:
            pixel_values = pixel_values.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            logits, boxes = self.module(pixel_values, inputs.pixel_mask)
        return RawOutputs(logits.float(), boxes.float())

    def close(self) -> None:
        self.module = None


def _short(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
