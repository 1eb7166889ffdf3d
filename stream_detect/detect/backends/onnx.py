"""The ONNX Runtime backend: the model exported once with dynamic batch and image sizes."""

from __future__ import annotations

import logging
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import ModelError
from ..device import Device
from ..preprocess import ModelInputs
from . import BackendOptions, RawOutputs, TorchThreadsYielded, loaded
from .cache import CacheKey
from .export import DetectionModule, example_inputs

log = logging.getLogger(__name__)

_FILE = "model.onnx"


def export_onnx(model: Any, path: Path, input_size: tuple[int, int] | None = None) -> Path:
    """Exports ``model`` (fp32, CPU) to ``path`` with dynamic batch, height and width.

    The export traces one image of ``input_size`` (height, width): a model
    whose sides cannot vary (RT-DETR) comes out fixed to it.

    Raises:
        ModelError: the exporter cannot take the model.
    """
    from torch.export import Dim

    model = loaded(model)
    model.to("cpu", dtype=torch.float32)
    model.to(memory_format=torch.contiguous_format)  # torch.export fails on channels_last weights
    module = DetectionModule(model).eval()
    batch, height, width = Dim("batch", min=1, max=256), Dim("height", min=32, max=8192), Dim("width", min=32, max=8192)
    started = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module, example_inputs(model, input_size), str(path), dynamo=True, verbose=False,
                input_names=["pixel_values", "pixel_mask"], output_names=["logits", "pred_boxes"],
                dynamic_shapes=({0: batch, 2: height, 3: width}, {0: batch, 1: height, 2: width}),
            )
    except Exception as error:  # the exporter raises many kinds
        raise ModelError(f"cannot export the model to ONNX: {str(error).strip().splitlines()[0]}") from None
    log.info("exported the model to ONNX in %.1f s", time.perf_counter() - started)
    return path


class OnnxBackend:
    """Runs the exported model with ONNX Runtime (CUDA provider on CUDA devices when present).

    With a cache and a model key in the options the export is kept in the
    cache and read back on later starts; without, it lives in a temporary
    directory for the backend's lifetime.
    """

    kind = "onnx"

    def __init__(self, model: Any, device: Device, options: BackendOptions) -> None:
        import onnxruntime as ort

        if options.precision not in ("auto", "fp32"):
            raise ModelError(f"the onnx backend runs in fp32, not {options.precision}")
        providers = ["CPUExecutionProvider"]
        if device.is_cuda and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        elif device.type != "cpu":
            raise ModelError(f"the onnx backend has no provider for {device.torch_device} here")
        session_options = ort.SessionOptions()
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session_options.log_severity_level = 3

        def session(path: Path) -> Any:
            return ort.InferenceSession(str(path), session_options, providers=providers)

        def export(directory: Path) -> None:
            export_onnx(model, directory / _FILE, options.input_size)

        self._directory: tempfile.TemporaryDirectory[str] | None = None
        if options.cache is not None and options.model_key is not None:
            self._session: Any = options.cache.load_or_build(
                CacheKey(options.model_key, "onnx", options.input_size),
                export,
                lambda directory: session(directory / _FILE),
            )
        else:
            self._directory = tempfile.TemporaryDirectory(prefix="stream-detect-onnx-")
            self._session = session(export_onnx(model, Path(self._directory.name) / _FILE, options.input_size))
        self._threads = TorchThreadsYielded() if not device.is_cuda else None
        self.name = "onnxruntime fp32"

    def __call__(self, inputs: ModelInputs) -> RawOutputs:
        feeds = {
            "pixel_values": inputs.pixel_values.float().cpu().numpy(),
            "pixel_mask": inputs.pixel_mask.cpu().numpy().astype(np.int64, copy=False),
        }
        logits, boxes = self._session.run(["logits", "pred_boxes"], feeds)
        return RawOutputs(torch.from_numpy(logits), torch.from_numpy(boxes))

    def close(self) -> None:
        self._session = None
        if self._directory is not None:
            self._directory.cleanup()
        if self._threads is not None:
            self._threads.restore()
