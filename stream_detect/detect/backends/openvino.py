"""The OpenVINO backend (CPU): the torch model converted once (cached on disk), with dynamic input shapes."""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from ...errors import ModelError
from ..device import Device
from ..preprocess import ModelInputs
from . import BackendOptions, RawOutputs, TorchThreadsYielded, loaded
from .cache import VERSIONED, CacheKey, library_versions
from .export import DetectionModule, example_inputs
from .quantize import quantize, require_nncf

log = logging.getLogger(__name__)

# int8: what stays in floating point runs in f32 (bf16 there was no faster: 360 against 351 ms).
_HINTS = {"auto": "f32", "fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}


class OpenVinoBackend:
    """Runs the model with OpenVINO's CPU plugin.

    Precision ``auto`` and ``fp32`` ask for f32 (equal to torch fp32 within
    float rounding); ``bf16`` lets the plugin use AMX/AVX-512 bf16 kernels,
    its fastest floating-point mode on CPUs that have them; ``int8`` runs the
    model quantized with NNCF (:mod:`.quantize`). With a cache and a model key in
    the options, the converted model is read from the cache (written there
    on the first start) and the plugin keeps its compiled blobs beside it.
    """

    kind = "openvino"

    def __init__(self, model: Any, device: Device, options: BackendOptions) -> None:
        import openvino as ov

        if device.type != "cpu":
            raise ModelError(f"the openvino backend runs on the CPU, not {device.torch_device}")
        if options.precision not in ("auto", "int8"):
            device.compute_dtype(options.precision)  # refuses what the CPU cannot do
        hint = _HINTS[options.precision]
        core = ov.Core()
        try:
            converted, key = _model(core, model, options)
            if key is not None and options.cache is not None:
                with options.cache.using(key) as entry:  # the plugin writes its blob in place
                    core.set_property({"CACHE_DIR": str(entry / "compiled")})
                    self._compiled: Any = core.compile_model(converted, "CPU", _config(hint))
            else:
                self._compiled = core.compile_model(converted, "CPU", _config(hint))
        except ModelError:
            raise
        except Exception as error:  # the converter, NNCF and the plugin raise many kinds
            raise ModelError(f"cannot convert the model to OpenVINO: {str(error).strip().splitlines()[0]}") from None
        self._request = self._compiled.create_infer_request()
        self._threads = TorchThreadsYielded() if device.type == "cpu" else None
        self.name = f"openvino {'fp32' if options.precision == 'auto' else options.precision}"

    def __call__(self, inputs: ModelInputs) -> RawOutputs:
        pixel_values = inputs.pixel_values.float().cpu().numpy()
        pixel_mask = inputs.pixel_mask.cpu().numpy()
        self._request.infer([pixel_values, pixel_mask])
        logits = torch.from_numpy(self._request.get_output_tensor(0).data.copy())
        boxes = torch.from_numpy(self._request.get_output_tensor(1).data.copy())
        return RawOutputs(logits, boxes)

    def close(self) -> None:
        self._request = None
        self._compiled = None
        if self._threads is not None:
            self._threads.restore()


_XML = "model.xml"


def _model(core: Any, model: Any, options: BackendOptions) -> tuple[Any, CacheKey | None]:
    """The OpenVINO model to compile (read from the cache, or converted and cached) and its cache key.

    int8 is the fp32 conversion (its own entry, shared with fp32 and bf16)
    quantized on the calibration frames, kept in an entry of its own.
    """
    calibration = options.calibration if options.precision == "int8" else None
    if options.precision == "int8":
        require_nncf()
        if calibration is None:
            raise ModelError("precision int8 needs calibration frames")
    cache, model_key = options.cache, options.model_key
    if cache is None or model_key is None:
        converted = _convert(model, options)
        return (converted if calibration is None else quantize(converted, calibration)), None
    key = CacheKey(model_key, "openvino", options.input_size)

    def read(directory: Path) -> Any:
        return core.read_model(str(directory / _XML))

    def fp32() -> Any:
        return cache.load_or_build(key, lambda directory: _save(_convert(model, options), directory), read)

    if calibration is None:
        return fp32(), key
    int8_key = CacheKey(f"{model_key} calibrated on {calibration.digest}", "openvino int8", options.input_size,
                        versions=library_versions((*VERSIONED, "nncf")))
    # The fp32 model is read only to quantize it: a start that finds the int8 entry never holds it.
    quantized = cache.load_or_build(int8_key, lambda directory: _save(quantize(fp32(), calibration), directory), read)
    return quantized, int8_key


def _config(hint: str) -> dict[str, str]:
    return {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}


def _convert(model: Any, options: BackendOptions) -> Any:
    """The torch model as an OpenVINO model with dynamic batch and image sides (fp32)."""
    import openvino as ov

    model = loaded(model)
    model.to("cpu", dtype=torch.float32)
    model.to(memory_format=torch.contiguous_format)  # as exported: plain NCHW weights
    module = DetectionModule(model).eval()
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        converted = ov.convert_model(
            module, example_input=example_inputs(model, options.input_size),
            input=[ov.PartialShape([-1, -1, -1, -1]), ov.PartialShape([-1, -1, -1])],
        )
    log.info("converted the model to OpenVINO in %.1f s", time.perf_counter() - started)
    return converted


def _save(converted: Any, directory: Path) -> None:
    import openvino as ov

    # fp32 weights as converted: save_model would otherwise halve them to fp16, and change the answers.
    ov.save_model(converted, str(directory / _XML), compress_to_fp16=False)
