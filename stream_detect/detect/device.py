"""The one device abstraction: where the model runs and in what precision.

Everything GPU-specific lives here: CUDA device selection, the precisions a
device runs well, reusable pinned host buffers and non-blocking copies, and
NVDEC/NVENC video codecs when FFmpeg and a CUDA device have them. On
CPU the same calls are plain views, so the code path is exercised everywhere.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from ..errors import ModelError

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda)(?::(\d+))?$")

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
CODEC_CHOICES = ("auto", "software", "nvidia")
# NVDEC decoders of FFmpeg, by the stream's codec name.
NVDEC = {"h264": "h264_cuvid", "hevc": "hevc_cuvid", "av1": "av1_cuvid", "vp9": "vp9_cuvid", "mpeg4": "mpeg4_cuvid"}
NVENC = "h264_nvenc"
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class PinnedBuffers:
    """Page-locked host buffers, one per shape and dtype, reused frame after frame.

    A copy from pinned memory can run asynchronously (``non_blocking=True``);
    before a buffer is overwritten, the copy that last read it must have
    finished, so each buffer keeps the CUDA event recorded after its copy.
    """

    def __init__(self, max_buffers: int = 16) -> None:
        self.max_buffers = max_buffers
        self._buffers: dict[tuple[tuple[int, ...], torch.dtype], tuple[torch.Tensor, torch.cuda.Event | None]] = {}
        self._lock = threading.Lock()

    def copy_to(self, host: torch.Tensor, device: torch.device) -> torch.Tensor:
        """``host`` on ``device``, staged through a reused pinned buffer and copied without blocking."""
        key = (tuple(host.shape), host.dtype)
        with self._lock:
            entry = self._buffers.get(key)
            if entry is None:
                if len(self._buffers) >= self.max_buffers:
                    self._buffers.pop(next(iter(self._buffers)))
                entry = (torch.empty(host.shape, dtype=host.dtype, pin_memory=True), None)
            buffer, previous = entry
            if previous is not None:
                previous.synchronize()  # the last copy out of this buffer is done
            buffer.copy_(host)
            on_device = buffer.to(device, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            self._buffers[key] = (buffer, event)
        return on_device

    def __len__(self) -> int:
        return len(self._buffers)


@dataclass(frozen=True)
class Device:
    """A resolved device and the dtype the model's weights are kept in there.

    Attributes:
        torch_device: Where tensors live.
        dtype: Weights' dtype (fp16 on CUDA, fp32 elsewhere).
    """

    torch_device: torch.device
    dtype: torch.dtype
    pinned: PinnedBuffers = field(default_factory=PinnedBuffers, compare=False, repr=False)

    @property
    def is_cuda(self) -> bool:
        return self.torch_device.type == "cuda"

    @property
    def type(self) -> str:
        return self.torch_device.type

    def to_device(self, host: torch.Tensor) -> torch.Tensor:
        """Copies a host tensor to the device; pinned and non-blocking on CUDA."""
        return self.host_to_device(host)

    def host_to_device(self, host: torch.Tensor) -> torch.Tensor:
        """``host`` on the device: the tensor itself on CPU, a pinned non-blocking copy on CUDA."""
        if not self.is_cuda:
            return host
        return self.pinned.copy_to(host, self.torch_device)

    def video_decoder(self, codec: str, requested: str = "auto") -> str | None:
        """The FFmpeg decoder for a ``codec`` stream: NVDEC (``h264_cuvid``, ...) or None for FFmpeg's own.

        ``auto`` takes NVDEC on CUDA devices when FFmpeg has it; ``nvidia``
        insists (an error when absent); ``software`` never.
        """
        _check_choice(requested)
        hardware = NVDEC.get(codec)
        if requested == "software" or (requested == "auto" and not self.is_cuda):
            return None
        if hardware is not None and self.is_cuda and codec_available(hardware, "r"):
            return hardware
        if requested == "nvidia":
            raise ModelError(f"no NVDEC decoder for {codec!r} here (needs a CUDA device and FFmpeg with cuvid)")
        return None

    def video_encoder(self, requested: str = "auto") -> str:
        """The H.264 encoder: ``h264_nvenc`` on CUDA devices when FFmpeg has it (``auto``/``nvidia``), else libx264."""
        _check_choice(requested)
        if requested != "software" and self.is_cuda and codec_available(NVENC, "w"):
            return NVENC
        if requested == "nvidia":
            raise ModelError("h264_nvenc is not available here (needs a CUDA device and FFmpeg with NVENC)")
        return "libx264"

    def file_encoder_threads(self) -> int | None:
        """Threads for libx264 while it encodes a file beside this device's detector; None: its own choice.

        On CPU the encoder and the detector share the cores and the detector
        sets the pace, so the encoder should spend as little CPU per frame as
        it can: x264's default (1.5 threads per core) spent 32.7 ms of CPU per
        1280x720 frame on 2 cores, one thread 23.7 ms for the same bytes, and
        one thread still encodes about 40 such frames a second, far above the
        detector's rate. One thread per 4 usable cores, at least one. On an
        accelerator the cores are the encoder's: x264 decides.
        """
        if self.type != "cpu":
            return None
        return max(1, usable_cores() // 4)

    def supports(self, precision: str) -> bool:
        """Whether the device computes in ``precision`` (fp32, bf16, fp16) natively."""
        if precision == "fp32":
            return True
        if self.is_cuda:
            if precision == "bf16":
                return bool(torch.cuda.is_bf16_supported())
            return precision == "fp16"
        if self.type == "cpu":
            mkldnn = torch.ops.mkldnn
            if precision == "bf16":
                return bool(mkldnn._is_mkldnn_bf16_supported())
            return bool(mkldnn._is_mkldnn_fp16_supported())
        return precision == "fp16" and self.type == "mps"

    def computes_bf16_natively(self) -> bool:
        """Whether bf16 is faster than fp32 here, not merely possible.

        On CPUs that needs AMX or AVX512-BF16 instructions (plain AVX-512 only
        emulates bf16, which :meth:`supports` accepts); on CUDA, a device that
        reports bf16 support.
        """
        if self.is_cuda:
            return bool(torch.cuda.is_bf16_supported())
        if self.type != "cpu":
            return False
        return cpu_has_native_bf16()

    def compute_dtype(self, precision: str) -> torch.dtype:
        """The dtype to compute in for ``precision``: ``auto`` is fp16 on CUDA and fp32 elsewhere.

        Raises:
            ModelError: the device does not compute in that precision.
        """
        if precision not in PRECISIONS:
            raise ModelError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        if precision == "auto":
            return torch.float16 if self.is_cuda else torch.float32
        if not self.supports(precision):
            raise ModelError(f"precision {precision!r} is not supported on {self.torch_device}")
        return _DTYPES[precision]


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


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity where the OS tells it, else all of them)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has AMX tiles or AVX512-BF16, as torch's CPU feature probe reads them."""
    cpu = torch.cpu
    checks = [getattr(cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    return any(bool(check()) for check in checks if check is not None)


def cpuinfo_fields(text: str) -> dict[str, str]:
    """The fields of the first processor in a Linux ``/proc/cpuinfo`` text (``flags``, ``model name``, ...)."""
    first = text.strip().split("\n\n")[0]
    return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in first.splitlines() if ":" in line)}


def cpu_signature() -> str:
    """What a precision check's verdict depends on of this CPU: its model and instruction sets (the first
    processor of Linux's ``/proc/cpuinfo``; the platform's processor name elsewhere), as a short digest."""
    try:
        fields = cpuinfo_fields(Path("/proc/cpuinfo").read_text())
    except OSError:
        fields = {}
    described = f"{fields.get('model name', platform.processor())} {platform.machine()} " \
                f"{' '.join(sorted(fields.get('flags', '').split()))}"
    return hashlib.sha256(described.encode()).hexdigest()[:16]


def codec_available(name: str, mode: Literal["r", "w"]) -> bool:
    """Whether the FFmpeg that PyAV bundles has codec ``name`` (``mode`` "r": decoder, "w": encoder)."""
    import av

    try:
        av.codec.Codec(name, mode)
    except Exception:  # av raises UnknownCodecError, ValueError, ... by version
        return False
    return True


def _check_choice(requested: str) -> None:
    if requested not in CODEC_CHOICES:
        raise ModelError(f"codec choice {requested!r} is not one of {', '.join(CODEC_CHOICES)}")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())
