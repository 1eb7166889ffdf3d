"""Any Hugging Face object-detection checkpoint as a :class:`Detector`.

Pre- and post-processing are the checkpoint's own image processor, so answers
equal ``transformers.pipeline("object-detection")``. A batch is split by image
size before it reaches the model: images of one size need no padding, so a
batch of N gives exactly the results of N single images, and the model only
ever sees a few input shapes (what a compiled backend needs).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import ModelConfig
from ..errors import ModelError
from ..records import Detections
from .device import Device, resolve_device

log = logging.getLogger(__name__)


DEMO_MODEL = Path(__file__).resolve().parent.parent / "models" / "demo"


def model_source(model_id: str) -> str:
    """Where ``from_pretrained`` loads ``model_id`` from: ``demo`` is the bundled demo model."""
    return str(DEMO_MODEL) if model_id == "demo" else model_id


def served_model_id(config: ModelConfig) -> str:
    """The id the model is served and reported under: ``name``, the hub id, or the directory's name."""
    if config.name:
        return config.name
    if config.id == "demo":
        return "stream-detect/demo"
    path = Path(config.id).expanduser()
    if path.is_dir():
        return path.resolve().name
    return config.id


def _load_error(model_id: str, error: BaseException) -> ModelError:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if isinstance(error, OSError) and ("offline" in text.lower() or "connect" in text.lower()
                                        or "couldn't" in text.lower() or "can't load" in text.lower()):
        hint = " (not in the local cache, and the hub could not be reached)"
    else:
        hint = ""
    return ModelError(f"cannot load model {model_id!r}{hint}: {text}")


class HFDetector:
    """A transformers object-detection model with its image processor.

    Use :meth:`load`; the constructor takes already loaded parts.
    """

    def __init__(self, model: Any, processor: Any, device: Device, model_id: str) -> None:
        self.model = model
        self.processor = processor
        self.device = device
        self.model_id = model_id
        self.labels: dict[int, str] = {int(k): v for k, v in model.config.id2label.items()}

    @classmethod
    def load(cls, config: ModelConfig) -> HFDetector:
        """Loads ``config.id`` (hub id or local directory) at ``config.revision``.

        The Hugging Face cache and ``HF_HUB_OFFLINE`` apply as usual.

        Raises:
            ModelError: one line naming the model when it cannot be loaded.
        """
        from transformers import AutoImageProcessor, AutoModelForObjectDetection

        device = resolve_device(config.device)
        source = model_source(config.id)
        path = Path(source).expanduser()
        if path.exists() and not path.is_dir():
            raise ModelError(f"cannot load model {source!r}: not a directory")
        if source.startswith((".", "/", "~")) and not path.exists():
            raise ModelError(f"cannot load model {source!r}: no such directory")
        try:
            processor = AutoImageProcessor.from_pretrained(source, revision=config.revision)
            model = AutoModelForObjectDetection.from_pretrained(source, revision=config.revision)
        except (OSError, ValueError, KeyError, ImportError, RuntimeError) as error:
            raise _load_error(source, error) from None
        model.eval()
        model.to(device.torch_device, dtype=device.dtype)
        log.info("loaded %s on %s (%s)", source, device.torch_device, str(device.dtype).removeprefix("torch."))
        return cls(model, processor, device, served_model_id(config))

    def detect(self, images: Sequence[np.ndarray], threshold: float) -> list[Detections]:
        """Detections of each ``(H, W, 3) uint8`` RGB image scoring above ``threshold``."""
        results: list[Detections | None] = [None] * len(images)
        by_size: dict[tuple[int, int], list[int]] = defaultdict(list)
        for index, image in enumerate(images):
            by_size[image.shape[:2]].append(index)
        for (height, width), indices in by_size.items():
            group = self._detect_same_size([images[i] for i in indices], height, width, threshold)
            for index, detections in zip(indices, group, strict=True):
                results[index] = detections
        return [r if r is not None else Detections.empty() for r in results]

    @torch.inference_mode()
    def _detect_same_size(
        self, images: list[np.ndarray], height: int, width: int, threshold: float
    ) -> list[Detections]:
        inputs = self.processor(images=images, return_tensors="pt")
        model_inputs = {
            name: self.device.to_device(tensor).to(self.device.dtype) if tensor.is_floating_point()
            else self.device.to_device(tensor)
            for name, tensor in inputs.items()
        }
        outputs = self.model(**model_inputs)
        for name in ("logits", "pred_boxes"):
            value = getattr(outputs, name, None)
            if value is not None:
                setattr(outputs, name, value.float())
        processed = self.processor.post_process_object_detection(
            outputs, threshold=threshold, target_sizes=[(height, width)] * len(images)
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
        self.model = None
        if self.device.is_cuda:
            torch.cuda.empty_cache()
