"""Tiny DETR checkpoints built with transformers, for tests.

They are saved with ``save_pretrained`` and loaded back through exactly the
path users take (``--model DIR``). A randomly initialised DETR predicts nearly
the same box for every query; ``train_steps`` trains it briefly on generated
scenes (coloured shapes on noise) so its outputs depend on the image and
comparisons mean something.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from stream_detect.detect.detr_training import frozen_copy, trainable_backbone

LABELS = ("circle", "square", "triangle")
TRAIN_SIZE = 160


def _config(labels: tuple[str, ...], use_timm_backbone: bool) -> object:
    from transformers import DetrConfig, ResNetConfig

    common = dict(
        d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=64, decoder_ffn_dim=64, num_queries=12, auxiliary_loss=False,
        id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)},
    )
    if use_timm_backbone:
        # The shape of facebook/detr-resnet-50's published config: a timm ResNet
        # named by `backbone`, without pretrained weights (nothing is downloaded).
        return DetrConfig(use_timm_backbone=True, backbone="resnet18", use_pretrained_backbone=False, **common)
    backbone = ResNetConfig(
        embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1], layer_type="basic",
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    return DetrConfig(backbone_config=backbone, use_timm_backbone=False, use_pretrained_backbone=False, **common)


def draw_scene(rng: np.random.Generator, size: int = TRAIN_SIZE) -> tuple[np.ndarray, list[tuple[int, list[float]]]]:
    """A noisy background with 1-3 filled shapes; returns (RGB image, [(class, xyxy)])."""
    image = rng.integers(0, 90, (size, size, 3), dtype=np.uint8)
    objects = []
    for _ in range(rng.integers(1, 4)):
        kind = int(rng.integers(0, 3))
        half = int(rng.integers(size // 10, size // 4))
        cx, cy = (int(v) for v in rng.integers(half, size - half, 2))
        colour = tuple(int(c) for c in rng.integers(120, 256, 3))
        if kind == 0:
            cv2.circle(image, (cx, cy), half, colour, -1)
        elif kind == 1:
            cv2.rectangle(image, (cx - half, cy - half), (cx + half, cy + half), colour, -1)
        else:
            points = np.array([[cx, cy - half], [cx - half, cy + half], [cx + half, cy + half]], np.int32)
            cv2.fillPoly(image, [points], colour)
        objects.append((kind, [cx - half, cy - half, cx + half + 1, cy + half + 1]))
    return image, objects


def _train(model: torch.nn.Module, steps: int, seed: int) -> torch.nn.Module:
    rng = np.random.default_rng(seed)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    model.train()
    for _ in range(steps):
        images, targets = [], []
        for _ in range(8):
            image, objects = draw_scene(rng)
            images.append(torch.from_numpy(image).permute(2, 0, 1))
            boxes = torch.tensor([box for _, box in objects], dtype=torch.float32) / TRAIN_SIZE
            cxcywh = torch.stack(
                [(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2,
                 boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], dim=1
            )
            targets.append({"class_labels": torch.tensor([k for k, _ in objects]), "boxes": cxcywh})
        pixels = (torch.stack(images).float() / 255 - mean) / std
        loss = model(pixel_values=pixels, labels=targets).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        optimizer.step()
    return model.eval()


def build_tiny_detr(
    path: Path,
    labels: tuple[str, ...] = LABELS,
    *,
    use_timm_backbone: bool = False,
    train_steps: int = 0,
    seed: int = 0,
) -> Path:
    """Builds, optionally trains, and saves a tiny DETR with its image processor into ``path``."""
    from transformers import DetrForObjectDetection, DetrImageProcessor

    torch.manual_seed(seed)
    model = DetrForObjectDetection(_config(labels, use_timm_backbone))
    if train_steps:
        model = frozen_copy(_train(trainable_backbone(model), train_steps, seed))
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    DetrImageProcessor(size={"shortest_edge": TRAIN_SIZE, "longest_edge": 256}).save_pretrained(path)
    return path
