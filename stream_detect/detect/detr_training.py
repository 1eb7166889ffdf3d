"""Training a DETR whose backbone starts from random weights.

transformers builds DETR for fine-tuning a pretrained backbone: batch norms
become frozen affine maps and the backbone's weights are frozen (with a
transformers ResNet backbone, all of them). Trained from scratch, the backbone
must learn and its batch norms must normalise: :func:`trainable_backbone`
swaps in real ``BatchNorm2d`` layers for training, and :func:`frozen_copy`
folds them back into the frozen layers transformers loads, so the saved
checkpoint is an ordinary ``DetrForObjectDetection``.
"""

from __future__ import annotations

import copy
import importlib

import torch


def trainable_backbone(model: torch.nn.Module) -> torch.nn.Module:
    """Unfreezes every parameter and gives the backbone learning batch norms (in place).

    Works for DETR and its relatives (Conditional DETR, ...), whose modules
    each define their own ``*FrozenBatchNorm2d``.
    """
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child).__name__.endswith("FrozenBatchNorm2d"):
                channels = int(child.get_buffer("weight").shape[0])
                setattr(module, name, torch.nn.BatchNorm2d(channels))
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return model


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy in the architecture transformers loads, batch norms folded into frozen ones."""
    modeling = importlib.import_module(type(model).__module__)
    frozen = copy.deepcopy(model).eval()
    modeling.replace_batch_norm(frozen)
    return frozen
