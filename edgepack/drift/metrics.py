"""Drift metrics between a float reference and a quantized model's outputs (pure NumPy).

All functions take float arrays of the same shape (batch axis first) and return plain floats.
"""

from __future__ import annotations

import math

import numpy as np

# Above this, the quantized output is indistinguishable from the float one for any threshold
# anyone sets; it keeps JSON finite when the error is exactly zero.
SQNR_CAP_DB = 200.0


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB: 10 log10(sum(ref^2) / sum((ref - test)^2)).

    Capped at :data:`SQNR_CAP_DB` (no noise); an all-zero reference with noise gives -cap.
    """
    ref = np.asarray(reference, dtype=np.float64)
    noise = float(np.sum((ref - np.asarray(test, dtype=np.float64)) ** 2))
    signal = float(np.sum(ref**2))
    if noise == 0.0:
        return SQNR_CAP_DB
    if signal == 0.0:
        return -SQNR_CAP_DB
    return float(np.clip(10.0 * math.log10(signal / noise), -SQNR_CAP_DB, SQNR_CAP_DB))


def cosine_similarity(reference: np.ndarray, test: np.ndarray) -> float:
    """Mean over samples of the cosine between flattened reference and test outputs."""
    ref = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    out = np.asarray(test, dtype=np.float64).reshape(len(test), -1)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
    dots = np.sum(ref * out, axis=1)
    both_zero = (np.linalg.norm(ref, axis=1) == 0) & (np.linalg.norm(out, axis=1) == 0)
    cosines = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 0.0)
    cosines = np.where(both_zero, 1.0, cosines)
    return float(np.mean(cosines))


def max_abs_error(reference: np.ndarray, test: np.ndarray) -> float:
    diff = np.abs(np.asarray(reference, dtype=np.float64) - np.asarray(test, dtype=np.float64))
    return float(diff.max()) if diff.size else 0.0


def top1(scores: np.ndarray) -> np.ndarray:
    """Predicted class per sample: argmax over the last axis, after flattening the rest."""
    scores = np.asarray(scores)
    return np.argmax(scores.reshape(len(scores), -1), axis=1)


def top1_agreement(reference: np.ndarray, test: np.ndarray) -> float:
    """Fraction of samples whose top-1 class is the same in both outputs."""
    return float(np.mean(top1(reference) == top1(test)))


def accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of samples whose top-1 class equals the label."""
    return float(np.mean(top1(scores) == np.asarray(labels)))


def is_classifier_output(shape: tuple[int, ...]) -> bool:
    """A (batch, classes) output with more than one class: top-1 metrics apply."""
    return len(shape) == 2 and shape[1] > 1
