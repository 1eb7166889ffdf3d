"""Calibrates the demo detector's scores (Platt scaling) and folds the result into its class head.

A detector trained with a focal loss ranks well but its scores are not
probabilities, while users and the tests pick detections by a score threshold.
This fits ``p = sigmoid(a * logit + b)`` to whether each query's best class and
box are a hit (IoU >= 0.5, one hit per object) on held-out generated images,
then rewrites the classifier's weights as ``a * W`` and bias as ``a * bias + b``:
the checkpoint keeps its architecture and the ranking (so mAP) is
unchanged::

    python scripts/calibrate_demo_model.py stream_detect/models/demo
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from demo_training_data import ShapeCanvas

from stream_detect.evaluation import iou
from stream_detect.sources.synthetic import LABELS, SyntheticScene


def query_hits(model: torch.nn.Module, processor: object, image: np.ndarray, classes: np.ndarray,
               boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each query's best class logit, and whether that class and box hit a not yet matched object."""
    inputs = processor(images=[image], return_tensors="pt")  # type: ignore[operator]
    with torch.inference_mode():
        outputs = model(**inputs)
    logits, label = outputs.logits[0].max(-1)
    height, width = image.shape[:2]
    cx, cy, w, h = outputs.pred_boxes[0].unbind(-1)
    predicted = torch.stack([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width,
                             (cy + h / 2) * height], -1).tolist()
    hits = np.zeros(len(predicted), np.float32)
    taken = [False] * len(boxes)
    for query in logits.argsort(descending=True).tolist():
        overlaps = [iou(tuple(predicted[query]), tuple(box)) if not taken[i] and classes[i] == label[query] else 0.0
                    for i, box in enumerate(boxes.tolist())]
        if overlaps and max(overlaps) >= 0.5:
            taken[int(np.argmax(overlaps))] = True
            hits[query] = 1.0
    return logits.numpy(), hits


def final_class_head(model: torch.nn.Module) -> torch.nn.Linear:
    """The linear layer whose output is the model's ``logits`` (RT-DETR: the last decoder layer's; DETR: its one)."""
    decoder = getattr(getattr(model, "model", None), "decoder", None)
    heads = getattr(decoder, "class_embed", None)
    if isinstance(heads, torch.nn.ModuleList):
        return heads[-1]  # type: ignore[return-value]
    return model.class_labels_classifier  # type: ignore[return-value]


def fit_platt(logits: np.ndarray, hits: np.ndarray) -> tuple[float, float]:
    x, y = torch.from_numpy(logits).double(), torch.from_numpy(hits).double()
    scale, shift = torch.ones((), dtype=torch.double, requires_grad=True), torch.zeros((), dtype=torch.double,
                                                                                       requires_grad=True)
    optimizer = torch.optim.LBFGS([scale, shift], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(scale * x + shift, y)
        loss.backward()
        return loss

    optimizer.step(closure)
    return scale.item(), shift.item()


def calibrate(directory: Path, images: int, seed: int) -> dict[str, float | bool]:
    """Fits on ``images`` held-out images, half camera frames and half :class:`ShapeCanvas` ones; saves in place."""
    from transformers import AutoImageProcessor, AutoModelForObjectDetection

    model = AutoModelForObjectDetection.from_pretrained(directory).eval()
    processor = AutoImageProcessor.from_pretrained(directory)
    scene, canvas = SyntheticScene(640, 360, seed=seed), ShapeCanvas(seed + 1)
    all_logits, all_hits = [], []
    for index in range(images):
        if index % 2:
            for _ in range(11):
                scene.step()
            image, truth = scene.render()
            classes = np.array([LABELS.index(t.label) for t in truth], np.int64)
            boxes = np.array([t.box for t in truth], np.float32).reshape(-1, 4)
        else:
            image, classes, boxes = canvas.render(640, 480)
        logits, hits = query_hits(model, processor, image, classes, boxes)
        all_logits.append(logits)
        all_hits.append(hits)
    scale, shift = fit_platt(np.concatenate(all_logits), np.concatenate(all_hits))
    if not scale > 0:  # would reverse the ranking: the scores are left as they are
        return {"scale": scale, "shift": shift, "images": images, "applied": False}
    head = final_class_head(model)
    with torch.no_grad():
        head.weight.mul_(scale)
        head.bias.mul_(scale).add_(shift)
    model.save_pretrained(directory)
    return {"scale": round(scale, 4), "shift": round(shift, 4), "images": images, "applied": True}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--seed", type=int, default=20_000)
    args = parser.parse_args()
    print(json.dumps(calibrate(args.directory, args.images, args.seed)))


if __name__ == "__main__":
    main()
