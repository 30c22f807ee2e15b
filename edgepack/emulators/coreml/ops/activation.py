"""Activations (MIL ``activation`` ops, iOS15-iOS18 definitions)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from edgepack.emulators.coreml.ops._util import broadcast_param, unary


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), evaluated without overflowing exp for large |x|."""
    decay = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0, decay) / (1.0 + decay)


def _erf(x: np.ndarray) -> np.ndarray:
    """erf, vectorised: the Chebyshev fit of Numerical Recipes (erfc with fractional error
    below 1.2e-7, under float32 resolution), evaluated in float64."""
    z = np.abs(np.asarray(x, dtype=np.float64))
    t = 1.0 / (1.0 + 0.5 * z)
    poly = -0.82215223 + t * 0.17087277
    for coefficient in (
        1.48851587,
        -1.13520398,
        0.27886807,
        -0.18628806,
        0.09678418,
        0.37409196,
        1.00002368,
        -1.26551223,
    ):
        poly = coefficient + t * poly
    erfc = t * np.exp(-z * z + poly)
    return (np.sign(x) * (1.0 - erfc)).astype(np.asarray(x).dtype)


def gelu(x: np.ndarray, mode: str = "EXACT") -> np.ndarray:
    if mode == "TANH_APPROXIMATION":
        inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * np.power(x, 3))
        return 0.5 * x * (1.0 + np.tanh(inner))
    if mode == "SIGMOID_APPROXIMATION":
        return x * _sigmoid(1.702 * x)
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = x - x.max(axis=int(axis), keepdims=True)
    exps = np.exp(shifted)
    return exps / exps.sum(axis=int(axis), keepdims=True)


def prelu(x: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    slope = broadcast_param(np.asarray(alpha), x.ndim, 1)
    return np.where(x >= 0, x, x * slope)


def softplus_parametric(x: np.ndarray, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    a = broadcast_param(np.asarray(alpha), x.ndim, 1)
    b = broadcast_param(np.asarray(beta), x.ndim, 1)
    return a * np.logaddexp(0.0, b * x)


KERNELS: dict[str, Callable[..., Any]] = {
    "relu": lambda x: np.maximum(x, 0),
    "relu6": lambda x: np.clip(x, 0, 6),
    "clip": lambda x, alpha, beta: np.minimum(np.maximum(x, alpha), beta),
    "sigmoid": _sigmoid,
    "sigmoid_hard": lambda x, alpha=0.2, beta=0.5: np.clip(alpha * x + beta, 0, 1),
    "tanh": unary(np.tanh),
    "scaled_tanh": lambda x, alpha=1.0, beta=1.0: alpha * np.tanh(beta * x),
    "gelu": gelu,
    "silu": lambda x: x * _sigmoid(x),
    "softmax": softmax,
    "leaky_relu": lambda x, alpha=0.01: np.where(x >= 0, x, alpha * x),
    "prelu": prelu,
    "elu": lambda x, alpha=1.0: np.where(x > 0, x, alpha * (np.exp(np.minimum(x, 0)) - 1)),
    "softplus": lambda x: np.logaddexp(0.0, x),
    "softplus_parametric": softplus_parametric,
    "softsign": lambda x: x / (1 + np.abs(x)),
    "linear_activation": lambda x, alpha=1.0, beta=0.0: alpha * x + beta,
    "thresholded_relu": lambda x, alpha=1.0: np.where(x >= alpha, x, 0),  # x >= alpha keeps x
}
