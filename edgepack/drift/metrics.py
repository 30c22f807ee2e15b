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


def sample_energies(reference: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's signal energy sum(ref^2) and noise energy sum((ref - test)^2): the parts
    :func:`sqnr_db` sums, kept per sample so that SQNR can be recomputed on any subset."""
    ref = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    out = np.asarray(test, dtype=np.float64).reshape(len(test), -1)
    return np.sum(ref**2, axis=1), np.sum((ref - out) ** 2, axis=1)


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


Z_95 = 1.959963984540054  # two-sided 95% quantile of the standard normal distribution


def wilson_interval(successes: int, total: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95% by default).

    Unlike the normal approximation it stays inside [0, 1] and does not collapse to a point
    when every sample agrees (Wilson 1927; Brown, Cai & DasGupta 2001 recommend it for n < 40
    and beyond).
    """
    if total <= 0:
        return 0.0, 1.0
    p = successes / total
    denominator = 1.0 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_difference_interval(
    both: int, first_only: int, second_only: int, neither: int, z: float = Z_95
) -> tuple[float, float]:
    """95% interval of p1 - p2 for two proportions measured on the same samples.

    Newcombe's method 10 (Statistics in Medicine 17:2635, 1998): Wilson intervals of both
    proportions combined with the correlation of the paired outcomes. ``first_only`` counts
    samples right for the first only (float right, quantized wrong: an accuracy drop).
    """
    total = both + first_only + second_only + neither
    if total <= 0:
        return -1.0, 1.0
    p1 = (both + first_only) / total
    p2 = (both + second_only) / total
    l1, u1 = wilson_interval(both + first_only, total, z)
    l2, u2 = wilson_interval(both + second_only, total, z)
    margins = (
        (both + first_only)
        * (second_only + neither)
        * (both + second_only)
        * (first_only + neither)
    )
    phi = 0.0
    if margins > 0:
        phi = (both * neither - first_only * second_only) / math.sqrt(margins)
    difference = p1 - p2
    lower = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    upper = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return max(-1.0, difference - lower), min(1.0, difference + upper)


def samples_needed(margin: float, z: float = Z_95) -> int:
    """Fewest samples whose 95% Wilson interval, for a result with no failing sample at
    all, stays within ``margin`` of the ideal: n / (n + z^2) >= 1 - margin."""
    if margin <= 0:
        return 0
    return math.ceil(z * z * (1 - margin) / margin - 1e-9)


def whole_samples(fraction: float, total: int) -> float:
    """``fraction`` of ``total`` samples, rounded at 1e-9 so that 0.99 * 400 is 396."""
    return round(fraction * total, 9)
