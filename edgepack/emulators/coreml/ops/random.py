"""Random number ops: ``random_bernoulli``, ``random_categorical``, ``random_normal``,
``random_uniform`` (iOS15 definitions, unchanged since).

The distributions are the ones coremltools' op definitions give; the numbers are NumPy's
(PCG64), not Core ML's generator, whose stream is not published: a program that draws random
numbers gives other draws on a device, with the same distribution. ``seed=-1`` (the default)
draws fresh numbers on every prediction; any other seed gives the same numbers on every
prediction. The interpreter never folds these ops into constants (see ``NONDETERMINISTIC``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

NONDETERMINISTIC = frozenset(
    {"random_bernoulli", "random_categorical", "random_normal", "random_uniform"}
)


def _generator(seed: Any) -> np.random.Generator:
    seed = -1 if seed is None else int(seed)
    return np.random.default_rng(None if seed < 0 else seed)


def _shape(shape: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in np.atleast_1d(np.asarray(shape)))


def random_bernoulli(shape: Any, prob: float = 0.5, seed: int = -1) -> np.ndarray:
    """1 with probability ``prob``, else 0."""
    draws = _generator(seed).random(_shape(shape))
    return (draws < float(prob)).astype(np.float32)


def random_normal(shape: Any, mean: float = 0.0, stddev: float = 1.0, seed: int = -1) -> np.ndarray:
    """Normal draws of the given mean and standard deviation."""
    draws = _generator(seed).standard_normal(_shape(shape))
    return (float(mean) + float(stddev) * draws).astype(np.float32)


def random_uniform(shape: Any, low: float = 0.0, high: float = 1.0, seed: int = -1) -> np.ndarray:
    """Uniform draws on ``[low, high)``; ``low`` everywhere when ``high == low``."""
    draws = _generator(seed).random(_shape(shape))
    return (float(low) + (float(high) - float(low)) * draws).astype(np.float32)


def random_categorical(
    x: np.ndarray, mode: str = "logits", size: int = 1, seed: int = -1
) -> np.ndarray:
    """``size`` class indices (as floats) per distribution of the last axis, drawn with
    replacement from ``softmax(x)`` (``mode="logits"``) or from ``x`` (``mode="probs"``,
    normalised)."""
    values = np.asarray(x, np.float64)
    if mode == "logits":
        weights = np.exp(values - values.max(axis=-1, keepdims=True))
    elif mode == "probs":
        weights = np.clip(values, 0.0, None)
    else:
        raise ValueError(f"random_categorical mode must be 'logits' or 'probs', not {mode!r}")
    rows = weights.reshape(-1, weights.shape[-1])
    cumulative = np.cumsum(rows, axis=-1)
    cumulative /= cumulative[:, -1:]
    draws = _generator(seed).random((rows.shape[0], int(size)))
    classes = np.stack(
        [np.searchsorted(c, d, side="right") for c, d in zip(cumulative, draws, strict=True)]
    )
    classes = np.minimum(classes, rows.shape[-1] - 1)  # a draw of exactly 1.0 after rounding
    return classes.reshape(*values.shape[:-1], int(size)).astype(np.float32)


KERNELS: dict[str, Callable[..., Any]] = {
    "random_bernoulli": random_bernoulli,
    "random_categorical": random_categorical,
    "random_normal": random_normal,
    "random_uniform": random_uniform,
}
