"""The one device abstraction: where the model runs and in what precision.

Everything GPU-specific lives here: CUDA device selection, fp16, pinned host
buffers and non-blocking copies. On CPU the same calls are plain copies, so
the code path is exercised everywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from ..errors import ModelError

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda)(?::(\d+))?$")


@dataclass(frozen=True)
class Device:
    """A resolved device and the dtype the model runs in there."""

    torch_device: torch.device
    dtype: torch.dtype

    @property
    def is_cuda(self) -> bool:
        return self.torch_device.type == "cuda"

    def to_device(self, host: torch.Tensor) -> torch.Tensor:
        """Copies a host tensor to the device; pinned and non-blocking on CUDA."""
        if not self.is_cuda:
            return host
        if not host.is_pinned():
            host = host.pin_memory()
        return host.to(self.torch_device, non_blocking=True)


def resolve_device(spec: str) -> Device:
    """Turns ``auto|cpu|mps|cuda|cuda:N`` into a :class:`Device`.

    ``auto`` picks CUDA, then Apple's MPS, then the CPU. CUDA runs in fp16,
    everything else in fp32.

    Raises:
        ModelError: an unknown spec, or a device that is not available.
    """
    match = _DEVICE.match(spec.strip().lower())
    if match is None:
        raise ModelError(f"device {spec!r} is not one of auto, cpu, mps, cuda, cuda:N")
    kind, index = match.group(1), match.group(2)
    if kind == "auto":
        if torch.cuda.is_available():
            kind = "cuda"
        elif _mps_available():
            kind = "mps"
        else:
            kind = "cpu"
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ModelError(f"device {spec!r} requested but CUDA is not available (torch {torch.__version__})")
        ordinal = int(index or 0)
        if ordinal >= torch.cuda.device_count():
            raise ModelError(f"device {spec!r} does not exist: {torch.cuda.device_count()} CUDA device(s) present")
        return Device(torch.device("cuda", ordinal), torch.float16)
    if kind == "mps":
        if not _mps_available():
            raise ModelError(f"device {spec!r} requested but MPS is not available")
        return Device(torch.device("mps"), torch.float32)
    if index is not None:
        raise ModelError(f"device {spec!r}: only CUDA devices take an index")
    return Device(torch.device("cpu"), torch.float32)


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())
