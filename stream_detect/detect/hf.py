"""Any Hugging Face object-detection checkpoint as a :class:`Detector`.

Preprocessing reproduces the checkpoint's own image processor in torch on the
model's device (or is the processor itself, for families it does not know),
post-processing is the processor's, so answers equal
``transformers.pipeline("object-detection")``. A batch is split by image size
before it reaches the model: images of one size need no padding, so a batch
of N gives exactly the results of N single images, and the model only ever
sees a few input shapes (what a compiled backend needs).
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import ModelConfig
from ..errors import InputError, ModelError
from ..records import Detections
from . import int8
from .backends import Backend, BackendOptions, DeferredModel, RawOutputs, build_backend
from .backends.cache import ConversionCache
from .device import Device, resolve_device
from .precision import choose_backend
from .preprocess import ModelInputs, TorchPreprocessor, fixed_input_size, processor_size, resized_size

log = logging.getLogger(__name__)


DEMO_MODEL = Path(__file__).resolve().parent.parent / "models" / "demo"


def model_source(model_id: str) -> str:
    """Where ``from_pretrained`` loads ``model_id`` from: ``demo`` is the bundled demo model."""
    return str(DEMO_MODEL) if model_id == "demo" else model_id


def _load_error(model_id: str, error: BaseException) -> ModelError:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if isinstance(error, OSError) and ("offline" in text.lower() or "connect" in text.lower()
                                        or "couldn't" in text.lower() or "can't load" in text.lower()):
        hint = " (not in the local cache, and the hub could not be reached)"
    else:
        hint = ""
    return ModelError(f"cannot load model {model_id!r}{hint}: {text}")


def resize_to(processor: Any, shortest_edge: int | None, longest_edge: int | None) -> None:
    """Overrides the processor's resize target (the speed/accuracy trade-off); None keeps its own.

    Raises:
        ModelError: the processor resizes to one fixed size (RT-DETR, the demo
            model): its model may need that size (RT-DETR: sides divisible by 32).
    """
    if shortest_edge is None and longest_edge is None:
        return
    fixed = fixed_input_size(processor)
    if fixed is not None:
        raise ModelError(f"this model takes images resized to a fixed {fixed[1]}x{fixed[0]}: "
                         "--shortest-edge/--longest-edge apply only to models that keep the aspect ratio")
    size = processor_size(processor)
    shortest = shortest_edge or size.get("shortest_edge") or min(size.values())
    longest = longest_edge or size.get("longest_edge") or max(shortest, round(shortest * 1333 / 800))
    if longest < shortest:
        raise ModelError(f"longest edge {longest} is shorter than the shortest edge {shortest}")
    processor.size = {"shortest_edge": shortest, "longest_edge": longest}


def model_fingerprint(source: str, model: Any) -> str | None:
    """What identifies the loaded weights, for the conversion cache: ``sha256:...`` of a local directory's
    files, or ``HUB_ID@COMMIT`` of a hub snapshot; None when neither is known (nothing is cached)."""
    path = Path(source).expanduser()
    if path.is_dir():
        digest = hashlib.sha256()
        for file in sorted(p for p in path.iterdir() if p.is_file() and p.suffix in _WEIGHT_SUFFIXES):
            digest.update(file.name.encode() + b"\0")
            with file.open("rb") as opened:
                while chunk := opened.read(1 << 22):
                    digest.update(chunk)
        return f"sha256:{digest.hexdigest()}"
    commit = getattr(model.config, "_commit_hash", None)
    return f"{source}@{commit}" if commit else None


_WEIGHT_SUFFIXES = (".json", ".safetensors", ".bin")


def backend_options(config: ModelConfig, processor: Any, device: Device, model: Any, source: str,
                    cache: ConversionCache | None = None) -> BackendOptions:
    """The backend options of ``config`` for a loaded ``processor`` and ``model`` (read from ``source``):
    its fingerprint for the conversion cache, and for precision int8 the calibration frames, preprocessed
    as the detector will (a bad calibration directory is an error here, before anything converts)."""
    calibration = None
    if config.precision == "int8":
        preprocessor = TorchPreprocessor.from_processor(processor, device)
        calibration = int8.calibration(config.calibration,
                                       lambda images: model_inputs(processor, preprocessor, device, images))
    return BackendOptions(kind=config.backend, precision=config.precision, compile=config.compile,
                          input_size=fixed_input_size(processor), model_key=model_fingerprint(source, model),
                          cache=cache if cache is not None else ConversionCache(), calibration=calibration)


def model_inputs(processor: Any, preprocessor: TorchPreprocessor | None, device: Device,
                 images: Sequence[np.ndarray]) -> ModelInputs:
    """The model's inputs for ``(H, W, 3) uint8`` RGB images, on ``device``: ``preprocessor`` when the
    checkpoint's processor is one it reproduces, else the processor itself."""
    if preprocessor is not None:
        return preprocessor(images)
    # Stated, not guessed: processors take a side of 1 or 3 pixels for the channels.
    inputs = processor(images=list(images), return_tensors="pt", input_data_format="channels_last")
    pixel_values = device.host_to_device(inputs["pixel_values"])
    mask = inputs.get("pixel_mask")
    if mask is None:
        mask = torch.ones((pixel_values.shape[0], *pixel_values.shape[-2:]), dtype=torch.int64)
    return ModelInputs(pixel_values, device.host_to_device(mask))


def chunks(indices: list[int], device: Device) -> list[list[int]]:
    """Cuts a same-size group into forward calls.

    On CPU one image per call: batching made the per-image time worse there
    (field notes). Elsewhere power-of-two chunks, so a compiled model sees
    few batch shapes (a batch of 7 runs as 4 + 2 + 1).
    """
    if not device.is_cuda:
        return [[index] for index in indices]
    cut: list[list[int]] = []
    start = 0
    while start < len(indices):
        size = 1 << ((len(indices) - start).bit_length() - 1)
        cut.append(indices[start : start + size])
        start += size
    return cut


class HFDetector:
    """A transformers object-detection model: preprocess, run on a backend, post-process.

    Preprocessing is :class:`TorchPreprocessor` on the model's device when it
    reproduces the checkpoint's processor (DETR family), else the processor
    itself; the model runs on a :mod:`backend <stream_detect.detect.backends>`;
    post-processing is the processor's own. Use :meth:`load`; the constructor
    takes already loaded parts.
    """

    def __init__(self, model: Any, processor: Any, device: Device, model_id: str,
                 backend: Backend | None = None) -> None:
        self.model = model
        self.processor = processor
        self.device = device
        self.model_id = model_id
        self.labels: dict[int, str] = {int(k): v for k, v in model.config.id2label.items()}
        # On CPU images run one at a time (chunks()): a batch of N would only hold the first image's
        # result back for N - 1 more forward passes (a file's first frame, the other cameras' frames).
        self.batch_limit: int | None = None if device.is_cuda else 1
        self.backend: Backend = backend if backend is not None else build_backend(model, device, BackendOptions())
        channels_last = bool(getattr(self.backend, "channels_last", False))
        self.preprocessor = TorchPreprocessor.from_processor(processor, device, channels_last)
        if self.preprocessor is None:
            log.info("%s: preprocessing with the checkpoint's processor", type(processor).__name__)

    @classmethod
    def load(cls, config: ModelConfig) -> HFDetector:
        """Loads ``config.id`` (hub id or local directory) at ``config.revision``.

        The Hugging Face cache and ``HF_HUB_OFFLINE`` apply as usual.

        Raises:
            ModelError: one line naming the model when it cannot be loaded.
        """
        from transformers import AutoConfig, AutoImageProcessor, AutoModelForObjectDetection

        device = resolve_device(config.device)
        source = model_source(config.id)
        path = Path(source).expanduser()
        if path.exists() and not path.is_dir():
            raise ModelError(f"cannot load model {source!r}: not a directory")
        if source.startswith((".", "/", "~")) and not path.exists():
            raise ModelError(f"cannot load model {source!r}: no such directory")
        try:
            processor = AutoImageProcessor.from_pretrained(source, revision=config.revision)
            model_config = AutoConfig.from_pretrained(source, revision=config.revision)
        except (OSError, ValueError, KeyError, ImportError, RuntimeError) as error:
            raise _load_error(source, error) from None

        def load_weights() -> Any:
            try:
                return AutoModelForObjectDetection.from_pretrained(source, revision=config.revision).eval()
            except Exception as error:  # safetensors, torch and transformers raise their own kinds
                raise _load_error(source, error) from None

        # The weights are read when a backend needs them: not at all when the converted model is cached.
        model = DeferredModel(model_config, load_weights)
        resize_to(processor, config.shortest_edge, config.longest_edge)
        options = backend_options(config, processor, device, model, source)
        backend = choose_backend(model, processor, device, options, config.threshold)
        log.info("loaded %s on %s (%s)", source, device.torch_device, backend.name)
        return cls(model, processor, device, config.served_id(), backend)

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """The ``(height, width)`` the processor resizes a ``height`` x ``width`` image to.

        Computed from the processor's size settings, as transformers does
        (:func:`~stream_detect.detect.preprocess.resized_size`); a processor
        that does not resize, or resizes in a way not modelled there, is taken
        to pass the image as it is.

        Raises:
            InputError: a side of the resized image would be 0 (an image far
                longer than wide, for a processor that keeps the aspect ratio).
        """
        if height < 1 or width < 1:
            raise InputError(f"a {width}x{height} image has no pixels")
        if getattr(self.processor, "do_resize", True) is False:
            return height, width
        try:
            resized = resized_size(height, width, processor_size(self.processor))
        except ValueError:
            return height, width
        if min(resized) < 1:
            raise InputError(f"a {width}x{height} image is too narrow for this model: its resize to the model's "
                             f"input is {resized[1]}x{resized[0]} pixels")
        return resized

    def detect(self, images: Sequence[np.ndarray], threshold: float) -> list[Detections]:
        """Detections of each ``(H, W, 3) uint8`` RGB image scoring above ``threshold``.

        Raises:
            InputError: an image :meth:`input_size` refuses.
        """
        results: list[Detections | None] = [None] * len(images)
        by_size: dict[tuple[int, int], list[int]] = defaultdict(list)
        for index, image in enumerate(images):
            by_size[image.shape[:2]].append(index)
        for height, width in by_size:
            self.input_size(height, width)
        for (height, width), indices in by_size.items():
            for chunk in chunks(indices, self.device):
                group = self._detect_same_size([images[i] for i in chunk], height, width, threshold)
                for index, detections in zip(chunk, group, strict=True):
                    results[index] = detections
        return [r if r is not None else Detections.empty() for r in results]

    @torch.inference_mode()
    def _detect_same_size(
        self, images: list[np.ndarray], height: int, width: int, threshold: float
    ) -> list[Detections]:
        outputs = self.forward(self.preprocess(images))
        return self.postprocess(outputs, [(height, width)] * len(images), threshold)

    @torch.inference_mode()
    def preprocess(self, images: Sequence[np.ndarray]) -> ModelInputs:
        """The model's inputs for ``(H, W, 3) uint8`` RGB images, on the model's device."""
        return model_inputs(self.processor, self.preprocessor, self.device, images)

    def forward(self, inputs: ModelInputs) -> RawOutputs:
        """Runs the model on the backend."""
        return self.backend(inputs)

    @torch.inference_mode()
    def postprocess(self, outputs: RawOutputs, sizes: Sequence[tuple[int, int]], threshold: float) -> list[Detections]:
        """The processor's post-processing, then :meth:`to_detections`; ``sizes`` are ``(height, width)``."""
        processed = self.processor.post_process_object_detection(
            outputs, threshold=threshold, target_sizes=list(sizes)
        )
        return [self.to_detections(result) for result in processed]

    def to_detections(self, result: dict[str, torch.Tensor]) -> Detections:
        """The one conversion from the processor's output to :class:`Detections`."""
        scores = result["scores"].detach().float().cpu().numpy()
        if scores.size == 0:
            return Detections.empty()
        class_ids = result["labels"].detach().cpu().numpy().astype(np.int64)
        return Detections(
            xyxy=result["boxes"].detach().float().cpu().numpy().astype(np.float32).reshape(-1, 4),
            confidence=scores.astype(np.float32),
            class_id=class_ids,
            labels=tuple(self.labels.get(int(c), str(int(c))) for c in class_ids),
        )

    def close(self) -> None:
        self.backend.close()
        self.model = None
        if self.device.is_cuda:
            torch.cuda.empty_cache()
