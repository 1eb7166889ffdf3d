"""Trains the bundled demo detector: a small Conditional DETR on the synthetic camera's scenes.

Reproducible (seeded) and CPU-only; saves a Hugging Face checkpoint (config,
safetensors, preprocessor config, id2label circle/square/triangle) that loads
with ``from_pretrained`` like any other model::

    python scripts/train_demo_model.py --out stream_detect/models/demo

Training images are independent random scenes rendered at several sizes and
aspect ratios and resized to the input size the image processor produces, so
the model sees what it will see at inference.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from stream_detect.detect.detr_training import frozen_copy, trainable_backbone
from stream_detect.evaluation import Truth, mean_average_precision
from stream_detect.records import Detections
from stream_detect.sources.synthetic import LABELS, SyntheticScene

SHORT_EDGE = 192
INPUT_SIZES = ((341, 192), (256, 192))  # 16:9 and 4:3 at the processor's shortest edge
RENDER_SIZES = {(341, 192): ((640, 360), (480, 270), (960, 540)), (256, 192): ((640, 480), (320, 240))}
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def build_model(seed: int) -> torch.nn.Module:
    """Conditional DETR, the DETR family member that converges in the time budget.

    Plain DETR with the same backbone and sizes stayed at mAP@0.5 < 0.01 after
    2,000 steps (9 minutes here), its loss on the plateau DETR is known for
    (the paper trains 500 epochs); Conditional DETR's conditional spatial
    queries are reported to converge 6.7-10x faster (Meng et al., 2021).
    """
    from transformers import ConditionalDetrConfig, ConditionalDetrForObjectDetection, ResNetConfig

    torch.manual_seed(seed)
    backbone = ResNetConfig(
        embedding_size=32, hidden_sizes=[32, 64, 128, 256], depths=[1, 1, 2, 1], layer_type="basic",
        out_features=["stage4"],
    )
    config = ConditionalDetrConfig(
        backbone_config=backbone, use_timm_backbone=False, use_pretrained_backbone=False,
        d_model=128, encoder_layers=2, decoder_layers=3, encoder_attention_heads=4, decoder_attention_heads=4,
        encoder_ffn_dim=256, decoder_ffn_dim=256, num_queries=20, auxiliary_loss=True, dropout=0.0,
        id2label=dict(enumerate(LABELS)), label2id={label: i for i, label in enumerate(LABELS)},
    )
    return trainable_backbone(ConditionalDetrForObjectDetection(config))


class SceneBank:
    """Synthetic scenes of several sizes, each rendering independent frames."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.scenes = {
            (w, h): SyntheticScene(w, h, seed=seed * 100 + i, shapes=5)
            for i, (w, h) in enumerate(size for sizes in RENDER_SIZES.values() for size in sizes)
        }

    def sample(self, input_size: tuple[int, int]) -> tuple[np.ndarray, list[tuple[int, list[float]]]]:
        render_sizes = RENDER_SIZES[input_size]
        scene = self.scenes[render_sizes[int(self.rng.integers(len(render_sizes)))]]
        image, truths = scene.random_frame()
        sx, sy = input_size[0] / scene.width, input_size[1] / scene.height
        resized = cv2.resize(image, input_size, interpolation=cv2.INTER_AREA)
        objects = [(LABELS.index(t.label), [t.box[0] * sx, t.box[1] * sy, t.box[2] * sx, t.box[3] * sy])
                   for t in truths]
        return resized, objects


def to_batch(samples: list[tuple[np.ndarray, list[tuple[int, list[float]]]]]) -> tuple[torch.Tensor, list[dict]]:
    images = np.stack([s[0] for s in samples]).astype(np.float32) / 255
    pixels = torch.from_numpy(((images - MEAN) / STD).transpose(0, 3, 1, 2).copy())
    height, width = images.shape[1:3]
    targets = []
    for _, objects in samples:
        boxes = torch.tensor([box for _, box in objects], dtype=torch.float32).reshape(-1, 4)
        boxes /= torch.tensor([width, height, width, height])
        cxcywh = torch.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2,
                              boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], dim=1)
        targets.append({"class_labels": torch.tensor([k for k, _ in objects], dtype=torch.int64),
                        "boxes": cxcywh})
    return pixels, targets


def learning_rate(step: int, steps: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def evaluate(model: torch.nn.Module, processor: object, frames: int, seed: int) -> dict[str, float]:
    """mAP@0.5 on held-out frames of the demo camera (640x360), through the image processor."""
    scene = SyntheticScene(640, 360, seed=seed)
    detections, truths = [], []
    model.eval()
    with torch.inference_mode():
        for _ in range(frames):
            for _ in range(7):
                scene.step()
            image, truth = scene.render()
            inputs = processor(images=[image], return_tensors="pt")  # type: ignore[operator]
            outputs = model(**inputs)
            result = processor.post_process_object_detection(  # type: ignore[attr-defined]
                outputs, threshold=0.05, target_sizes=[(360, 640)])[0]
            detections.append(Detections(
                xyxy=result["boxes"].numpy().astype(np.float32).reshape(-1, 4),
                confidence=result["scores"].numpy().astype(np.float32),
                class_id=result["labels"].numpy().astype(np.int64),
                labels=tuple(LABELS[int(i)] for i in result["labels"]),
            ))
            truths.append([Truth(t.label, t.box) for t in truth])
    model.train()
    return mean_average_precision(detections, truths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=11_000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=2_000)
    args = parser.parse_args()

    from transformers import ConditionalDetrImageProcessor

    torch.manual_seed(args.seed)
    bank = SceneBank(args.seed)
    model = build_model(args.seed)
    processor = ConditionalDetrImageProcessor(size={"shortest_edge": SHORT_EDGE, "longest_edge": INPUT_SIZES[0][0]})
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    model.train()
    started = time.monotonic()
    history = []
    for step in range(args.steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, args.steps, args.lr, warmup=300)
        input_size = INPUT_SIZES[step % 4 == 3]  # one batch in four is 4:3
        pixels, targets = to_batch([bank.sample(input_size) for _ in range(args.batch_size)])
        loss = model(pixel_values=pixels, labels=targets).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        optimizer.step()
        if step % 200 == 0:
            print(f"step {step} loss {loss.item():.3f} {time.monotonic() - started:.0f}s", flush=True)
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            scores = evaluate(model, processor, 60, seed=10_000 + args.seed)
            history.append({"step": step + 1, "minutes": round((time.monotonic() - started) / 60, 1), **scores})
            print(json.dumps(history[-1]), flush=True)
            frozen_copy(model).save_pretrained(args.out)
            processor.save_pretrained(args.out)
    (args.out / "training.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                        "history": history}, indent=2))


if __name__ == "__main__":
    main()
