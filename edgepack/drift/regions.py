"""Probability maps measured as detections: regions of a one-channel map, as DBNet decodes them.

A segmentation-style detector (DBNet text detection, a one-class mask head) outputs one
probability per pixel, ``[N, 1, H, W]`` or ``[N, H, W, 1]``. Its detections are the connected
regions of the map binarised at :data:`BINARIZE` (8-connected), each kept when its mean
probability is >= the box score (:data:`BOX_SCORE`) and its bounding box is at least
:data:`MIN_SIDE` pixels on each side; PaddleOCR's ``DBPostProcess`` defaults (``thresh`` 0.3,
``box_thresh`` 0.6, ``min_size`` 3, at most :data:`MAX_REGIONS` candidates). Boxes are the
regions' axis-aligned bounding boxes, not unclipped polygons: the same rule on the float and
the quantized map, so matching them measures what quantization changed.

Pure NumPy: connected components by edge hooking and pointer jumping over the whole map.
"""

from __future__ import annotations

import numpy as np

BINARIZE = 0.3  # PaddleOCR DBPostProcess thresh
BOX_SCORE = 0.6  # box_thresh: a region's mean probability
MIN_SIDE = 3  # min_size
MAX_REGIONS = 1000  # max_candidates
MIN_SIDE_OF_MAP = 16
SATURATED = 0.9  # share of pixels below 0.1 or above 0.9 in a probability map
# how far a float sigmoid may round past [0, 1]: onnxruntime's gives 1.0000001 on PP-OCRv4's
# detector, which a strict bound took for "not probabilities"
PROBABILITY_SLACK = 1e-5

Regions = tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes_xyxy [M, 4], scores, classes


def looks_like_map(reference: np.ndarray) -> bool:
    """True for a batch of one-channel probability maps beyond doubt: rank 4 with one channel
    (axis 1 or 3), both spatial sides >= 16, every value a probability
    (:func:`are_probabilities`), and saturated as a sigmoid's detection map is (>= 90% of the
    pixels below 0.1 or above 0.9), which an image scaled to [0, 1] is not."""
    ref = np.asarray(reference)
    if ref.ndim != 4 or ref.size == 0 or 1 not in (ref.shape[1], ref.shape[3]):
        return False
    maps = as_maps(ref)
    if min(maps.shape[1:]) < MIN_SIDE_OF_MAP or not are_probabilities(maps):
        return False
    return bool(np.mean((maps < 0.1) | (maps > 0.9)) >= SATURATED)


def are_probabilities(values: np.ndarray) -> bool:
    """Whether every value lies in [0, 1], give or take :data:`PROBABILITY_SLACK`."""
    return bool(values.min() >= -PROBABILITY_SLACK and values.max() <= 1 + PROBABILITY_SLACK)


def as_maps(output: np.ndarray) -> np.ndarray:
    """``[N, 1, H, W]`` or ``[N, H, W, 1]`` as ``[N, H, W]`` (channels first when both fit)."""
    out = np.asarray(output)
    if out.ndim != 4 or 1 not in (out.shape[1], out.shape[3]):
        raise ValueError(f"expected one-channel maps [N, 1, H, W] or [N, H, W, 1]: {out.shape}")
    return out[:, 0] if out.shape[1] == 1 else out[..., 0]


def decode_map(
    probabilities: np.ndarray, box_score: float = BOX_SCORE, binarize: float = BINARIZE
) -> Regions:
    """Detections of one ``[H, W]`` map: bounding boxes ``[M, 4]`` (x1, y1, x2, y2 in pixels,
    float64, edges inclusive of the last pixel), mean probabilities ``[M]`` and classes (all
    0), highest score first, at most :data:`MAX_REGIONS` of them."""
    probs = np.asarray(probabilities, dtype=np.float64)
    labels = label_regions(probs >= binarize)
    found = labels >= 0
    if not found.any():
        return np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.intp)
    rows, cols = np.nonzero(found)
    ids, inverse = np.unique(labels[found], return_inverse=True)
    count = len(ids)
    boxes = np.stack(
        [
            _reduce(np.minimum, cols, inverse, count, np.inf),
            _reduce(np.minimum, rows, inverse, count, np.inf),
            _reduce(np.maximum, cols, inverse, count, -np.inf) + 1,
            _reduce(np.maximum, rows, inverse, count, -np.inf) + 1,
        ],
        axis=1,
    )
    scores = np.bincount(inverse, probs[found], count) / np.bincount(inverse, minlength=count)
    sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    kept = np.flatnonzero((scores >= box_score) & (sides >= MIN_SIDE))
    kept = kept[np.argsort(-scores[kept], kind="stable")][:MAX_REGIONS]
    return boxes[kept], scores[kept], np.zeros(len(kept), dtype=np.intp)


def label_regions(mask: np.ndarray) -> np.ndarray:
    """8-connected components of a boolean ``[H, W]`` mask: ``[H, W]`` labels (the smallest
    flat index in each region), -1 outside the mask."""
    mask = np.asarray(mask, dtype=bool)
    height, width = mask.shape
    index = np.arange(height * width).reshape(height, width)
    first, second = _neighbour_pairs(mask, index)
    parent = np.arange(height * width)
    while True:
        low = np.minimum(parent[first], parent[second])
        high = np.maximum(parent[first], parent[second])
        joining = low != high
        if not joining.any():
            break
        np.minimum.at(parent, high[joining], low[joining])
        parent = _flatten(parent)
    return np.where(mask, parent.reshape(height, width), -1)


def _neighbour_pairs(mask: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices of the pairs of 8-neighbours that are both in the mask."""
    firsts, seconds = [], []
    # right, down, down-right, down-left: each neighbourhood edge once
    for rows, cols, next_rows, next_cols in (
        (slice(None), slice(None, -1), slice(None), slice(1, None)),
        (slice(None, -1), slice(None), slice(1, None), slice(None)),
        (slice(None, -1), slice(None, -1), slice(1, None), slice(1, None)),
        (slice(None, -1), slice(1, None), slice(1, None), slice(None, -1)),
    ):
        both = mask[rows, cols] & mask[next_rows, next_cols]
        firsts.append(index[rows, cols][both])
        seconds.append(index[next_rows, next_cols][both])
    return np.concatenate(firsts), np.concatenate(seconds)


def _flatten(parent: np.ndarray) -> np.ndarray:
    """Pointer jumping until every element points at its root."""
    while True:
        grand = parent[parent]
        if np.array_equal(grand, parent):
            return parent
        parent = grand


def _reduce(
    ufunc: np.ufunc, values: np.ndarray, groups: np.ndarray, count: int, start: float
) -> np.ndarray:
    out = np.full(count, start)
    ufunc.at(out, groups, values)
    return out
