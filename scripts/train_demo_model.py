"""Trains the bundled demo detector: a small RT-DETR on synthetic shapes, from scratch.

Reproducible (seeded) and CPU-only; saves a Hugging Face checkpoint (config,
safetensors, preprocessor config, id2label circle/square/triangle) that loads
with ``from_pretrained`` like any other model::

    python scripts/train_demo_model.py --out stream_detect/models/demo

Training images (``demo_training_data``) are the synthetic camera's scenes and
a second, independent shape generator over noise and photo-like backgrounds,
rendered at camera sizes and resized to the model's input size as the image
processor does at inference.

Steps are small (4 images) and many: in the hour a 2-core CPU has, twice the
updates of 8-image steps learned more. For the same reason the learning rate
is high (1.2e-3 learned much faster than 3e-4 and 6e-4). What is evaluated
and saved is a moving average of the weights.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from calibrate_demo_model import calibrate
from demo_training_data import INPUT_SIZE, MEAN, STD, BatchStream, ShapeCanvas
from torch import nn

from stream_detect.evaluation import Truth, mean_average_precision, precision_recall
from stream_detect.records import Detections
from stream_detect.sources.synthetic import LABELS, SyntheticScene


def build_model(seed: int, queries: int, decoder_layers: int, denoising: int, levels: int = 3,
                class_loss_weight: float = 2.0) -> nn.Module:
    """A small RT-DETR: the DETR family member that gets far enough in the time budget.

    Plain DETR with a from-scratch ResNet stayed at mAP@0.5 < 0.01 after 2,000
    steps (9 minutes here), on the plateau DETR is known for (the paper trains
    500 epochs). Conditional DETR (conditional spatial queries) learned, but a
    4,000-step run reached only 0.58 held-out mAP@0.5, classifying circles as
    squares. RT-DETR (Zhao et al., 2024) chooses its decoder queries from the
    encoder's best-scoring positions, trains denoising queries beside them and
    scores with an IoU-aware loss; here it reached the same mAP as Conditional
    DETR in a third of the steps. Its multi-scale features (strides 8, 16, 32)
    need input sides divisible by 32, hence one fixed input size.

    The classification (varifocal) loss weighs twice transformers' default
    against the box losses (L1 5, GIoU 2): in runs of equal length that
    learned faster (40-frame mAP 0.48 at step 1,000 against 0.38) and found
    more of the shapes drawn by other code.
    """
    from transformers import RTDetrConfig, RTDetrForObjectDetection, RTDetrResNetConfig

    torch.manual_seed(seed)
    widths = [32, 64, 128, 256]
    backbone = RTDetrResNetConfig(
        embedding_size=32, hidden_sizes=widths, depths=[1, 1, 2, 1], layer_type="basic",
        out_features=["stage2", "stage3", "stage4"][3 - levels :],
    )
    hidden = 96
    config = RTDetrConfig(
        backbone_config=backbone, freeze_backbone_batch_norms=False,  # trained from scratch: batch norms learn
        encoder_in_channels=widths[4 - levels :], feat_strides=[8, 16, 32][3 - levels :], num_feature_levels=levels,
        encode_proj_layers=[levels - 1], encoder_hidden_dim=hidden, encoder_ffn_dim=2 * hidden,
        encoder_attention_heads=4, hidden_expansion=0.5, decoder_in_channels=[hidden] * levels,
        d_model=128, decoder_ffn_dim=256, decoder_attention_heads=4, decoder_layers=decoder_layers,
        num_queries=queries, num_denoising=denoising, weight_loss_vfl=class_loss_weight,
        id2label=dict(enumerate(LABELS)), label2id={label: i for i, label in enumerate(LABELS)},
    )
    return RTDetrForObjectDetection(config)


def build_processor() -> Any:
    """Resize to :data:`INPUT_SIZE` (aspect ratio not kept), rescale and normalise (ImageNet statistics)."""
    from transformers import RTDetrImageProcessor

    width, height = INPUT_SIZE
    return RTDetrImageProcessor(size={"height": height, "width": width}, do_normalize=True, do_pad=False,
                                image_mean=[float(v) for v in MEAN], image_std=[float(v) for v in STD])


def learning_rate(step: int, steps: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))


class WeightAverage:
    """An exponential moving average of the weights and batch-norm statistics: what is evaluated and saved.

    Late in a short run the weights still move a lot from step to step; the
    average is a steadier model. The decay ramps up from 0 (``1 - exp(-n /
    warmup)``) so early averages do not hold on to the random initialisation.
    """

    def __init__(self, model: nn.Module, decay: float, warmup: int) -> None:
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.warmup, self.updates = decay, warmup, 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = self.decay * (1 - math.exp(-self.updates / self.warmup))
        for average, current in zip(self.model.state_dict().values(), model.state_dict().values(), strict=True):
            if average.dtype.is_floating_point:
                average.lerp_(current, 1 - decay)
            else:
                average.copy_(current)


def predict(model: nn.Module, processor: object, image: np.ndarray, threshold: float) -> Detections:
    inputs = processor(images=[image], return_tensors="pt")  # type: ignore[operator]
    outputs = model(**inputs)
    result = processor.post_process_object_detection(  # type: ignore[attr-defined]
        outputs, threshold=threshold, target_sizes=[image.shape[:2]])[0]
    return Detections(
        xyxy=result["boxes"].numpy().astype(np.float32).reshape(-1, 4),
        confidence=result["scores"].numpy().astype(np.float32),
        class_id=result["labels"].numpy().astype(np.int64),
        labels=tuple(LABELS[int(i)] for i in result["labels"]),
    )


def evaluate(model: nn.Module, processor: object, frames: int, seed: int) -> dict[str, float]:
    """mAP@0.5 on held-out frames of the demo camera (640x360), one frame from each of ``frames``
    scenes (frames of one scene share their few shapes: too small a sample to rank runs by), and
    precision/recall at score 0.5 on held-out :class:`ShapeCanvas` images (640x480), both through
    the image processor."""
    canvas = ShapeCanvas(seed + 1)
    camera: tuple[list[Detections], list[list[Truth]]] = ([], [])
    other: tuple[list[Detections], list[list[Truth]]] = ([], [])
    training = model.training
    model.eval()
    with torch.inference_mode():
        for index in range(frames):
            scene = SyntheticScene(640, 360, seed=seed + index)
            for _ in range(30 + index % 30):  # shapes have moved, some entering or leaving
                scene.step()
            image, truth = scene.render()
            camera[0].append(predict(model, processor, image, 0.05))
            camera[1].append([Truth(t.label, t.box) for t in truth])
            image, classes, boxes = canvas.render(640, 480)
            other[0].append(predict(model, processor, image, 0.5))
            other[1].append([Truth(LABELS[c], tuple(b)) for c, b in zip(classes, boxes.tolist(), strict=True)])
    model.train(training)
    precision, recall = precision_recall(*other, iou_threshold=0.5)
    return {**mean_average_precision(*camera), "other_precision": precision, "other_recall": recall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=6_000)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1.2e-3,
                        help="peak learning rate, after 300 warmup steps, then a cosine decay to 2%% of it")
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--decoder-layers", type=int, default=3)
    parser.add_argument("--denoising", type=int, default=30, help="denoising queries in training")
    parser.add_argument("--class-loss-weight", type=float, default=2.0,
                        help="weight of the (IoU-aware) classification loss against the box losses (5 and 2)")
    parser.add_argument("--feature-levels", type=int, default=3, choices=(2, 3),
                        help="3: strides 8, 16 and 32; 2: strides 16 and 32")
    parser.add_argument("--average-decay", type=float, default=0.999,
                        help="decay of the weights' moving average that is evaluated and saved; 0: the last weights")
    parser.add_argument("--camera-share", type=float, default=0.5,
                        help="share of training images from the synthetic camera; the rest from the shape canvas")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; the image generator has its own process (two cores: one each)")
    parser.add_argument("--eval-every", type=int, default=2_000)
    parser.add_argument("--eval-frames", type=int, default=40)
    parser.add_argument("--calibration-images", type=int, default=200, help="0: keep the raw scores")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    model = build_model(args.seed, args.queries, args.decoder_layers, args.denoising, args.feature_levels,
                        args.class_loss_weight)
    model.to(memory_format=torch.channels_last)  # ~1.2x faster convolutions on CPU, same numbers
    processor = build_processor()
    parameters = list(model.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=args.lr, weight_decay=1e-4)
    average = WeightAverage(model, args.average_decay, warmup=500)
    loader = torch.utils.data.DataLoader(BatchStream(args.seed, args.batch_size, args.camera_share), batch_size=None,
                                         num_workers=1, prefetch_factor=4, persistent_workers=True)
    model.train()
    started = time.monotonic()
    history = []
    for step, (pixels, targets) in enumerate(loader):
        if step == args.steps:
            break
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, args.steps, args.lr, warmup=300)
        loss = model(pixel_values=pixels.contiguous(memory_format=torch.channels_last), labels=targets).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 0.1)
        optimizer.step()
        average.update(model)
        if step % 100 == 0:
            elapsed = time.monotonic() - started
            print(f"step {step} loss {loss.item():.3f} {elapsed:.0f}s "
                  f"{elapsed / (step + 1):.3f}s/step", flush=True)
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            scores = evaluate(average.model, processor, args.eval_frames, seed=10_000 + args.seed)
            history.append({"step": step + 1, "minutes": round((time.monotonic() - started) / 60, 1),
                            **{k: round(v, 3) for k, v in scores.items()}})
            if step + 1 == args.steps and args.average_decay:  # what the average adds, for the record
                last = evaluate(model, processor, args.eval_frames, seed=10_000 + args.seed)
                history[-1]["last_weights"] = {k: round(v, 3) for k, v in last.items()}
            print(json.dumps(history[-1]), flush=True)
            save(average.model, processor, args.out)
            write_log(args, history)
    if args.calibration_images:
        history.append({"calibration": calibrate(args.out, args.calibration_images, seed=20_000 + args.seed)})
        print(json.dumps(history[-1]), flush=True)
        write_log(args, history)


def save(model: nn.Module, processor: Any, out: Path) -> None:
    model.to(memory_format=torch.contiguous_format)  # the checkpoint stores plain (contiguous) tensors
    model.save_pretrained(out)
    processor.save_pretrained(out)
    model.to(memory_format=torch.channels_last)


def write_log(args: argparse.Namespace, history: list[dict]) -> None:
    (args.out / "training.json").write_text(json.dumps(
        {"args": {k: str(v) for k, v in vars(args).items()}, "history": history}, indent=2))


if __name__ == "__main__":
    main()
