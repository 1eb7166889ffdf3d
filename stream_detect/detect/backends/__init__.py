"""Inference backends: the one step that varies, running the model on a preprocessed batch.

Every backend turns :class:`~stream_detect.detect.preprocess.ModelInputs`
into :class:`RawOutputs` (DETR's ``logits`` and ``pred_boxes``, fp32), so
pre- and post-processing are shared and answers stay those of the
checkpoint's own processor. Kinds:

- ``torch``: eager PyTorch; channels_last, autocast to bf16/fp16 where the
  device computes in them, optionally ``torch.compile`` (one graph per input
  shape; batches are cut into power-of-two chunks so few shapes occur);
- ``onnx``: ONNX Runtime on a dynamic-shape export (``pip install
  stream-detect[onnx]``);
- ``openvino``: OpenVINO on CPU (a dependency on x86-64); the only kind that runs precision
  ``int8`` (quantized with NNCF: ``pip install stream-detect[int8]``).

``auto`` picks the fastest kind available for the device (measured on CPU:
OpenVINO, then torch; on CUDA: torch) and falls back to the next when one
cannot take the model.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch

from ...errors import ModelError
from ..device import Device
from ..preprocess import ModelInputs
from .cache import ConversionCache

if TYPE_CHECKING:
    from .quantize import Calibration

log = logging.getLogger(__name__)

KINDS = ("auto", "torch", "onnx", "openvino")
_MODULES = {"onnx": "onnxruntime", "openvino": "openvino"}
_RUNS_ON = {"cpu": ("torch", "onnx", "openvino"), "cuda": ("torch", "onnx"), "mps": ("torch",)}
# What auto tries, fastest first, as measured (docs/performance.md). ONNX Runtime on the
# dynamic-shape export was slower than torch's channels_last eager on this project's CPU,
# so auto never picks it.
_AUTO_ORDER = {"cpu": ("openvino", "torch"), "cuda": ("torch",), "mps": ("torch",)}
# The kinds that run precision int8 (a model quantized with NNCF).
INT8_KINDS = ("openvino",)


@dataclass(frozen=True)
class BackendOptions:
    """How the model runs.

    Attributes:
        kind: ``auto``, ``torch``, ``onnx`` or ``openvino``.
        precision: ``auto`` (fp16 on CUDA, fp32 elsewhere), ``fp32``, ``bf16``, ``fp16`` or ``int8``
            (openvino only, quantized on ``calibration``).
        channels_last: torch: keep convolution activations in NHWC (faster on CPU and tensor cores).
        compile: torch: ``torch.compile`` the model (slow first call per input shape).
        input_size: ``(height, width)`` when the processor resizes every image to one size:
            exporters trace the model at it (RT-DETR exports with its sides fixed).
        model_key: the model's fingerprint (hub id and commit, or a hash of its files), for the cache;
            None: nothing is cached.
        cache: where converting backends (onnx, openvino) keep what they converted.
        calibration: int8: the frames activations are calibrated on.
    """

    kind: str = "torch"
    precision: str = "auto"
    channels_last: bool = True
    compile: bool = False
    input_size: tuple[int, int] | None = None
    model_key: str | None = None
    cache: ConversionCache | None = None
    calibration: Calibration | None = None


@dataclass
class RawOutputs:
    """What post-processing reads: ``logits (B, Q, C+1)`` and ``pred_boxes (B, Q, 4)``, fp32."""

    logits: torch.Tensor
    pred_boxes: torch.Tensor


class Backend(Protocol):
    """Runs the model on a preprocessed batch; ``kind`` is one of :data:`KINDS` (not auto)."""

    name: str
    kind: str

    def __call__(self, inputs: ModelInputs) -> RawOutputs: ...

    def close(self) -> None: ...


class TorchThreadsYielded:
    """While a non-torch runtime runs the model, torch keeps one thread.

    Both runtimes keep their worker threads spinning between calls; on a
    2-core machine torch's spinning OpenMP threads slowed OpenVINO's inference
    and OpenVINO's slowed torch's pre- and post-processing (a 720p frame:
    58 ms per frame in all, 13 ms with torch on one thread). ``restore`` (on
    ``close``) gives torch its threads back once no such backend is left.
    """

    _lock = threading.Lock()
    _holders = 0
    _previous = 0

    def __init__(self) -> None:
        self._held = True
        with TorchThreadsYielded._lock:
            if TorchThreadsYielded._holders == 0:
                TorchThreadsYielded._previous = torch.get_num_threads()
                torch.set_num_threads(1)
            TorchThreadsYielded._holders += 1

    def restore(self) -> None:
        with TorchThreadsYielded._lock:
            if not self._held:
                return
            self._held = False
            TorchThreadsYielded._holders -= 1
            if TorchThreadsYielded._holders == 0 and TorchThreadsYielded._previous:
                torch.set_num_threads(TorchThreadsYielded._previous)


class DeferredModel:
    """A transformers model whose config is known and whose weights are loaded on first use.

    A backend that finds its conversion in the cache never needs the torch
    model: it reads the converted one, and the start-up skips building the
    torch model (1.6 s for DETR-R50 on 2 cores) and holding its weights
    beside the runtime's. Backends call :func:`loaded` before using the model.
    """

    def __init__(self, config: Any, load: Callable[[], Any]) -> None:
        self.config = config
        self._load = load
        self._model: Any = None
        self._failure: BaseException | None = None
        self._lock = threading.Lock()

    @property
    def is_loaded(self) -> bool:
        return self._model is not None

    @property
    def failed(self) -> bool:
        """Loading the weights failed (every backend would fail the same way)."""
        return self._failure is not None

    def get(self) -> Any:
        with self._lock:
            if self._failure is not None:
                raise self._failure
            if self._model is None:
                try:
                    self._model = self._load()
                except BaseException as error:
                    self._failure = error
                    raise
            return self._model


def loaded(model: Any) -> Any:
    """``model`` itself, or the model a :class:`DeferredModel` stands for (loaded now if need be)."""
    return model.get() if isinstance(model, DeferredModel) else model


def installed(kind: str) -> bool:
    """Whether the optional runtime ``kind`` needs is importable (torch always is)."""
    module = _MODULES.get(kind)
    return module is None or importlib.util.find_spec(module) is not None


def available_kinds(device: Device) -> list[str]:
    """The backend kinds installed here that run on ``device``."""
    return [kind for kind in _RUNS_ON.get(device.type, ("torch",)) if installed(kind)]


def auto_kinds(device: Device) -> list[str]:
    """What ``auto`` tries on ``device``, fastest first."""
    return [kind for kind in _AUTO_ORDER.get(device.type, ("torch",)) if installed(kind)]


def build_backend(model: Any, device: Device, options: BackendOptions) -> Backend:
    """The backend ``options`` asks for; ``auto`` tries :func:`auto_kinds` in order.

    Raises:
        ModelError: an unknown kind, a runtime that is not installed, or a
            model it cannot run.
    """
    if options.kind not in KINDS:
        raise ModelError(f"backend {options.kind!r} is not one of {', '.join(KINDS)}")
    if options.kind != "auto":
        return _build(options.kind, model, device, options)
    candidates = auto_kinds(device)
    if options.precision == "int8":
        candidates = [kind for kind in candidates if kind in INT8_KINDS]
        if not candidates:
            raise ModelError(f"precision int8 runs on the openvino backend, which does not run on "
                             f"{device.torch_device} here")
    for kind in candidates:
        try:
            return _build(kind, model, device, options)
        except ModelError as error:
            if kind == candidates[-1] or (isinstance(model, DeferredModel) and model.failed):
                raise
            log.warning("backend %s unavailable (%s); trying the next", kind, error)
    raise ModelError(f"no backend available on {device.torch_device}")


def _build(kind: str, model: Any, device: Device, options: BackendOptions) -> Backend:
    if not installed(kind):
        raise ModelError(f"backend {kind!r} needs {_MODULES[kind]}: pip install 'stream-detect[{kind}]'")
    if options.precision == "int8" and kind not in INT8_KINDS:
        raise ModelError(f"precision int8 runs on the openvino backend only, not {kind}")
    if kind == "torch":
        from .torch_backend import TorchBackend

        return TorchBackend(model, device, options)
    if kind == "onnx":
        from .onnx import OnnxBackend

        return OnnxBackend(model, device, options)
    from .openvino import OpenVinoBackend

    return OpenVinoBackend(model, device, options)


__all__ = [
    "Backend", "BackendOptions", "DeferredModel", "RawOutputs", "TorchThreadsYielded", "auto_kinds", "available_kinds",
    "build_backend", "installed", "loaded",
]
