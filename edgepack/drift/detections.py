"""Detector outputs measured as detections: float and quantized boxes matched by class and IoU.

A YOLOv8-style head is one tensor of ``4 + C`` rows per anchor: the box (``cx, cy, w, h`` in
pixels) and ``C`` class scores already in 0..1 (sigmoid; no objectness row). It comes either
``[N, 4 + C, A]`` (``"channels_first"``, as Ultralytics exports it) or ``[N, A, 4 + C]``
(``"channels_last"``). Both outputs are decoded like Ultralytics' ``non_max_suppression``: an
anchor is kept when its best class score is >= the score threshold, then class-aware NMS
suppresses boxes overlapping a higher-scored box of the same class by IoU > :data:`NMS_IOU`,
and at most :data:`MAX_DETECTIONS` are kept per sample. Quantized detections are then matched
to float ones (:func:`detection_drift`), giving the recall and precision of the quantized model
against the float model and the mean IoU of the matched boxes.

One-channel probability maps (DBNet text detection, layout ``"map"``) are decoded into regions
by :mod:`edgepack.drift.regions` and matched the same way.

Pure NumPy; loops run over samples and kept detections, never over anchors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgepack.drift import regions

ROW_LAYOUTS = ("channels_first", "channels_last")  # YOLO-style rows of box and scores
MAP = "map"
LAYOUTS = (*ROW_LAYOUTS, MAP)
NMS_IOU = 0.7  # Ultralytics' default IoU threshold of non_max_suppression
MAX_DETECTIONS = 300  # Ultralytics' default max_det
MIN_ROWS = 5  # 4 box rows and at least one class
MAX_ROWS = 1024
NMS_BLOCK = 512  # candidates per IoU matrix in nms()
ANCHORS_PER_ROW = 4  # the anchor axis is at least this many times longer than the row axis

Detections = tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes_xyxy [M, 4], scores, classes


@dataclass(frozen=True)
class DetectionDrift:
    """Quantized detections against float detections, totalled over the batch.

    ``recall`` is matched / float detections (None when the float model detects nothing),
    ``precision`` matched / quantized detections (None when the quantized model detects
    nothing), ``mean_iou`` the mean IoU of the matched pairs (None when nothing matched).
    """

    name: str
    layout: str
    score_threshold: float
    iou_threshold: float
    float_detections: int
    quantized_detections: int
    matched: int
    recall: float | None
    precision: float | None
    mean_iou: float | None


def recognise_layout(reference: np.ndarray) -> str | None:
    """The layout of a detection output when its shape and values leave no doubt, else None.

    A YOLOv8-style output has rank 3; one non-batch axis (the row axis) has ``k`` entries with
    5 <= k <= 1024 and the other non-batch axis (the anchor axis) at least ``4 * k``; along the
    row axis, every value of rows ``4:`` (class scores) lies in [0, 1] and each of rows ``0:4``
    (box ``cx, cy, w, h`` in pixels) has a float range (max - min over the batch and anchors)
    above 1. Row axis 1 is ``"channels_first"``, row axis 2 ``"channels_last"``. (The two axes
    cannot both pass the shape test, since each would have to be 4 times the other.) A
    one-channel probability map is ``"map"`` (:func:`edgepack.drift.regions.looks_like_map`).
    """
    ref = np.asarray(reference)
    if regions.looks_like_map(ref):
        return MAP
    if ref.ndim != 3 or ref.size == 0:
        return None
    for axis, layout in zip((1, 2), ROW_LAYOUTS, strict=True):
        rows, anchors = ref.shape[axis], ref.shape[3 - axis]
        if MIN_ROWS <= rows <= MAX_ROWS and anchors >= ANCHORS_PER_ROW * rows:
            return layout if _looks_like_detections(np.moveaxis(ref, axis, 0)) else None
    return None


def rank_of(layout: str) -> int:
    """The rank of a detection output of ``layout`` (the batch axis included)."""
    _check_layout(layout)
    return 4 if layout == MAP else 3


def decode(
    output_one_sample: np.ndarray,
    layout: str,
    score_threshold: float,
    nms_iou: float = NMS_IOU,
    max_detections: int = MAX_DETECTIONS,
) -> Detections:
    """Detections of one sample (``[4 + C, A]`` or ``[A, 4 + C]`` as ``layout`` says).

    Returns ``boxes_xyxy [M, 4]`` (float64 pixels), ``scores [M]`` and ``classes [M]`` (int),
    highest score first: anchors whose best class score is >= ``score_threshold``, after
    class-aware NMS (IoU > ``nms_iou`` suppressed), at most ``max_detections``.
    """
    rows = _rows(np.asarray(output_one_sample), layout)
    class_scores = rows[4:]
    best = class_scores.max(axis=0)
    kept = np.flatnonzero(best >= score_threshold)
    scores = best[kept].astype(np.float64)
    classes = class_scores[:, kept].argmax(axis=0)
    boxes = xywh_to_xyxy(rows[:4, kept].T.astype(np.float64))
    survivors = nms(boxes, scores, classes, nms_iou, max_detections)
    return boxes[survivors], scores[survivors], classes[survivors]


def detection_drift(
    name: str,
    reference: np.ndarray,
    quantized: np.ndarray,
    layout: str,
    score_threshold: float = 0.25,
    iou_threshold: float = 0.5,
) -> DetectionDrift:
    """Decode both outputs per sample and match quantized detections to float detections.

    Per sample, float detections are taken highest score first; each is matched to the unused
    quantized detection of the same class with the best IoU, if that IoU >= ``iou_threshold``.
    Counts are totalled over the batch. ``score_threshold`` applies to YOLO-style outputs; maps
    keep regions by DBNet's own box score. Raises ValueError on a bad layout or mismatched
    shapes.
    """
    _check_layout(layout)
    ref = np.asarray(reference)
    out = np.asarray(quantized)
    if ref.shape != out.shape or ref.ndim != rank_of(layout):
        raise ValueError(
            f"output {name!r}: expected two {layout} detection outputs of rank "
            f"{rank_of(layout)} and one shape, "
            f"got float {ref.shape} and quantized {out.shape}"
        )
    if layout == MAP:
        score_threshold = regions.BOX_SCORE
        samples = zip(regions.as_maps(ref), regions.as_maps(out), strict=True)
        decoded = [(regions.decode_map(r), regions.decode_map(q)) for r, q in samples]
    else:
        decoded = [
            (decode(r, layout, score_threshold), decode(q, layout, score_threshold))
            for r, q in zip(ref, out, strict=True)
        ]
    float_count = sum(len(found[0]) for found, _ in decoded)
    quantized_count = sum(len(found[0]) for _, found in decoded)
    ious = [
        match_detections(found, (candidates[0], candidates[2]), iou_threshold)
        for found, candidates in decoded
    ]
    matched_ious = np.concatenate(ious) if ious else np.zeros(0)
    matched = len(matched_ious)
    return DetectionDrift(
        name=name,
        layout=layout,
        score_threshold=float(score_threshold),
        iou_threshold=float(iou_threshold),
        float_detections=float_count,
        quantized_detections=quantized_count,
        matched=matched,
        recall=matched / float_count if float_count else None,
        precision=matched / quantized_count if quantized_count else None,
        mean_iou=float(matched_ious.mean()) if matched else None,
    )


def match_detections(
    reference: Detections,
    candidates: tuple[np.ndarray, np.ndarray],
    iou_threshold: float,
) -> np.ndarray:
    """IoUs of the greedy matches of ``candidates`` (boxes, classes) to ``reference``
    (boxes, scores, classes): reference detections highest score first, each taking the unused
    candidate of its class with the best IoU when that IoU >= ``iou_threshold``."""
    ref_boxes, ref_scores, ref_classes = reference
    cand_boxes, cand_classes = candidates
    if not len(ref_boxes) or not len(cand_boxes):
        return np.zeros(0)
    iou = box_iou(ref_boxes, cand_boxes)
    iou[np.asarray(ref_classes)[:, None] != np.asarray(cand_classes)[None, :]] = -1.0
    used = np.zeros(len(cand_boxes), dtype=bool)
    matched: list[float] = []
    for row in np.argsort(-np.asarray(ref_scores), kind="stable"):
        available = np.where(used, -1.0, iou[row])
        best = int(np.argmax(available))
        if available[best] >= max(iou_threshold, 0.0):  # -1: another class or used
            used[best] = True
            matched.append(float(available[best]))
    return np.asarray(matched, dtype=np.float64)


def box_iou(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Pairwise IoU ``[M, K]`` of ``xyxy`` boxes ``first [M, 4]`` and ``second [K, 4]``
    (0 where both boxes are empty)."""
    a = np.asarray(first, dtype=np.float64)
    b = np.asarray(second, dtype=np.float64)
    width = _overlap(a[:, 0], a[:, 2], b[:, 0], b[:, 2])
    inter = width * _overlap(a[:, 1], a[:, 3], b[:, 1], b[:, 3])
    union = _area(a)[:, None] + _area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    iou_threshold: float = NMS_IOU,
    max_detections: int = MAX_DETECTIONS,
) -> np.ndarray:
    """Indices kept by class-aware greedy NMS, highest score first: a box is suppressed by a
    kept box of the same class when their IoU > ``iou_threshold``.

    Candidates are taken in blocks of :data:`NMS_BLOCK` by score, with one IoU matrix per
    block (against itself and the boxes kept so far), until ``max_detections`` are kept.
    """
    order = np.argsort(-np.asarray(scores), kind="stable")
    kept: list[int] = []
    for begin in range(0, order.size, NMS_BLOCK):
        if len(kept) >= max_detections:
            break
        block = order[begin : begin + NMS_BLOCK]
        alive = np.ones(block.size, dtype=bool)
        if kept:
            alive &= ~_suppresses(boxes, classes, np.asarray(kept), block, iou_threshold).any(0)
        within = _suppresses(boxes, classes, block, block, iou_threshold)
        for i in np.flatnonzero(alive):
            if not alive[i]:
                continue
            kept.append(int(block[i]))
            if len(kept) >= max_detections:
                break
            alive[i + 1 :] &= ~within[i, i + 1 :]
    return np.asarray(kept, dtype=np.intp)


def _suppresses(
    boxes: np.ndarray, classes: np.ndarray, rows: np.ndarray, columns: np.ndarray, iou: float
) -> np.ndarray:
    """``[rows, columns]``: same class and IoU > ``iou``."""
    same = np.asarray(classes)[rows][:, None] == np.asarray(classes)[columns][None, :]
    return same & (box_iou(boxes[rows], boxes[columns]) > iou)


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """``[M, 4]`` centre-size boxes (cx, cy, w, h) as corners (x1, y1, x2, y2)."""
    centres, sizes = boxes[:, :2], boxes[:, 2:4]
    return np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1)


def _area(boxes: np.ndarray) -> np.ndarray:
    sides = np.clip(boxes[:, 2:] - boxes[:, :2], 0.0, None)
    return np.asarray(sides[:, 0] * sides[:, 1])


def _overlap(
    low_a: np.ndarray, high_a: np.ndarray, low_b: np.ndarray, high_b: np.ndarray
) -> np.ndarray:
    """``[M, K]`` lengths of the intersections of intervals ``a [M]`` and ``b [K]`` (>= 0)."""
    length = np.minimum(high_a[:, None], high_b[None, :]) - np.maximum(low_a[:, None], low_b)
    return np.clip(length, 0.0, None, out=length)


def _rows(sample: np.ndarray, layout: str) -> np.ndarray:
    """One sample as ``[4 + C, A]`` (a view)."""
    if layout not in ROW_LAYOUTS:
        raise ValueError(f"layout must be one of {ROW_LAYOUTS} for rows, got {layout!r}")
    if sample.ndim != 2 or sample.shape[0 if layout == "channels_first" else 1] < MIN_ROWS:
        raise ValueError(f"expected one {layout} sample of 4 box rows and classes: {sample.shape}")
    return sample if layout == "channels_first" else sample.T


def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")


def _looks_like_detections(rows: np.ndarray) -> bool:
    """``rows [4 + C, N, A]``: scores within [0, 1], each box row ranging over > 1 pixel."""
    if not regions.are_probabilities(rows[4:]):
        return False
    boxes = rows[:4].reshape(4, -1)
    return bool(np.all(boxes.max(axis=1).astype(np.float64) - boxes.min(axis=1) > 1))
