"""int8: an OpenVINO model quantized after training with NNCF, for the explicit precision ``int8``.

Weights and activations of convolutions and matrix products become int8
(AVX512-VNNI/AMX kernels); softmax, norms and the rest stay in floating
point (NNCF's transformer preset, with SmoothQuant). The activations' ranges
come from a calibration set: preprocessed frames run through the fp32 model
once. On 2 cores of an AVX512-BF16 CPU, DETR-R50's full-size forward pass
took 370 ms in int8 against 518 ms in bf16 and 976 ms in fp32
(docs/performance.md); quantizing it on 16 frames took 45 s, paid once (the
result is cached like any conversion).

int8 changes answers more than bf16 does, so it is never chosen by itself:
the detector checks it against fp32 when it loads
(:mod:`~stream_detect.detect.int8`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import ModelError
from ..preprocess import ModelInputs

log = logging.getLogger(__name__)

NNCF_MISSING = "precision int8 needs NNCF: pip install 'stream-detect[int8]'"


@dataclass(frozen=True)
class Calibration:
    """What int8 calibrates on.

    Attributes:
        digest: identifies the images (part of the conversion cache's key).
        inputs: makes the preprocessed calibration batches (called only when quantizing).
        described: what the images are, for log lines.
        images: the RGB images themselves (the int8 check detects on some of them).
    """

    digest: str
    inputs: Callable[[], Sequence[ModelInputs]]
    described: str
    images: tuple[np.ndarray, ...] = ()


def require_nncf() -> None:
    """Raises :class:`ModelError` (one line, how to install it) when NNCF is not installed."""
    if importlib.util.find_spec("nncf") is None:
        raise ModelError(NNCF_MISSING)


def quantize(model: Any, calibration: Calibration) -> Any:
    """The OpenVINO ``model`` (fp32) quantized to int8 on ``calibration``'s frames."""
    require_nncf()
    import nncf

    batches = list(calibration.inputs())
    if not batches:
        raise ModelError("precision int8: the calibration set has no images")
    started = time.perf_counter()
    dataset = nncf.Dataset(batches, lambda batch: [batch.pixel_values.float().numpy(), batch.pixel_mask.numpy()])
    with _nncf_quiet():
        quantized = nncf.quantize(model, dataset, model_type=nncf.ModelType.TRANSFORMER, subset_size=len(batches),
                                  fast_bias_correction=True)
    log.info("quantized the model to int8 on %s in %.1f s", calibration.described, time.perf_counter() - started)
    return quantized


@contextlib.contextmanager
def _nncf_quiet() -> Iterator[None]:
    """NNCF writes its log lines and progress bars to standard output, where ``stream-detect detect``
    prints its answers: its log goes to this process's logging (warnings and worse) instead, and its
    progress bars nowhere (the time it took is logged after)."""
    logger = logging.getLogger("nncf")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.propagate = True
    logger.setLevel(logging.WARNING)
    with contextlib.redirect_stdout(io.StringIO()):
        yield


__all__ = ["NNCF_MISSING", "Calibration", "quantize", "require_nncf"]
