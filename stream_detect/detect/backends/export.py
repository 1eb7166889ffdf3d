"""The model as a plain tensor function, for exporters and compilers."""

from __future__ import annotations

import inspect
from typing import Any

import torch


class DetectionModule(torch.nn.Module):
    """``(pixel_values, pixel_mask) -> (logits, pred_boxes)`` around a transformers detector."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model
        self.takes_mask = "pixel_mask" in inspect.signature(model.forward).parameters

    def forward(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.takes_mask:
            outputs = self.model(pixel_values=pixel_values, pixel_mask=pixel_mask)
        else:
            outputs = self.model(pixel_values=pixel_values)
        return outputs.logits, outputs.pred_boxes


def example_inputs(model: Any, size: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of one random image of ``size`` (height, width; default 320x480), to trace or export the model with."""
    height, width = size or (320, 480)
    channels = int(getattr(model.config, "num_channels", 3))
    return torch.randn(1, channels, height, width), torch.ones(1, height, width, dtype=torch.int64)
