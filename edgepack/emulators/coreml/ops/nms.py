"""``non_maximum_suppression`` (iOS15 and iOS17 signatures).

Semantics from coremltools' op definitions and the reference its op tests hold Core ML to
(``ops/tests/iOS14/test_tensor_operation.py``, ``_ref_non_maximum_suppression``): boxes are
``(x_center, y_center, width, height)``; a box's score is its best class score; candidates
scoring above ``score_threshold`` are taken highest first, and a candidate whose IoU with an
already selected box is above ``iou_threshold`` is suppressed, until ``max_boxes`` are
selected. With ``per_class_suppression`` the suppression runs within each box's best class,
and the selections are merged in score order. When nothing is selected, the best-scoring box
is returned alone. Outputs are padded to ``max_boxes``: zeros for boxes and scores, -1 for
indices. iOS17 puts the box axis last, has no ``score_threshold`` and no count output.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def non_maximum_suppression(
    boxes: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float,
    score_threshold: float,
    max_boxes: int,
    per_class_suppression: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``boxes [n, B, 4]``, ``scores [n, B, K]`` -> selected boxes ``[n, max_boxes, 4]``,
    their scores ``[n, max_boxes, K]``, indices ``[n, max_boxes]`` and counts ``[n]``."""
    max_boxes = int(max_boxes)
    batch, _, classes = scores.shape
    out_boxes = np.zeros((batch, max_boxes, 4), dtype=boxes.dtype)
    out_scores = np.zeros((batch, max_boxes, classes), dtype=scores.dtype)
    out_indices = np.full((batch, max_boxes), -1, dtype=np.int32)
    counts = np.zeros(batch, dtype=np.int32)
    for b in range(batch):
        best = scores[b].astype(np.float64).max(axis=-1)
        kept = _select(
            boxes[b].astype(np.float64),
            best,
            scores[b].argmax(axis=-1) if per_class_suppression else np.zeros(len(best), int),
            float(iou_threshold),
            float(score_threshold),
            max_boxes,
        )
        if not kept:
            kept = [int(np.argmax(best))]
        kept = kept[:max_boxes]
        out_boxes[b, : len(kept)] = boxes[b, kept]
        out_scores[b, : len(kept)] = scores[b, kept]
        out_indices[b, : len(kept)] = kept
        counts[b] = len(kept)
    return out_boxes, out_scores, out_indices, counts


def non_maximum_suppression_ios17(
    boxes: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float,
    max_boxes: int,
    per_class_suppression: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``boxes [n, 4, B]``, ``scores [n, K, B]`` -> ``[n, 4, max_boxes]``,
    ``[n, K, max_boxes]``, ``[n, max_boxes]``; no score threshold."""
    selected, selected_scores, indices, _ = non_maximum_suppression(
        np.swapaxes(boxes, 1, 2),
        np.swapaxes(scores, 1, 2),
        iou_threshold,
        -np.inf,
        max_boxes,
        per_class_suppression,
    )
    return np.swapaxes(selected, 1, 2), np.swapaxes(selected_scores, 1, 2), indices


def _select(
    boxes: np.ndarray,
    best: np.ndarray,
    classes: np.ndarray,
    iou_threshold: float,
    score_threshold: float,
    max_boxes: int,
) -> list[int]:
    """Greedy NMS within each class (one class: plain NMS); the selections of all classes in
    score order (ties: the lower index first)."""
    order = np.argsort(-best, kind="stable")
    iou = _iou_matrix(boxes)
    selected_ranks: list[int] = []
    for cls in dict.fromkeys(classes[order].tolist()):  # classes by their best box
        chosen: list[int] = []
        for rank, box in enumerate(order):
            if classes[box] != cls or best[box] <= score_threshold:
                continue
            if len(chosen) >= max_boxes:
                break
            if all(iou[box, order[other]] <= iou_threshold for other in chosen):
                chosen.append(rank)
        selected_ranks.extend(chosen)
    return [int(order[rank]) for rank in sorted(selected_ranks)]


def _iou_matrix(boxes: np.ndarray) -> np.ndarray:
    """Pairwise IoU of center-size boxes (0 where both are empty)."""
    x, y, w, h = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    left, right, bottom, top = x - w / 2, x + w / 2, y - h / 2, y + h / 2
    width = np.clip(np.minimum(right[:, None], right) - np.maximum(left[:, None], left), 0, None)
    height = np.clip(np.minimum(top[:, None], top) - np.maximum(bottom[:, None], bottom), 0, None)
    inter = width * height
    union = (w * h)[:, None] + w * h - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


KERNELS: dict[str, Callable[..., Any]] = {"non_maximum_suppression": non_maximum_suppression}
VERSIONED: dict[tuple[str, int], Callable[..., Any]] = {
    ("non_maximum_suppression", 17): non_maximum_suppression_ios17
}
