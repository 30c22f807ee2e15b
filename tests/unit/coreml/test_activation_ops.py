"""Activation kernels of the Core ML emulator against NumPy/SciPy references written from
coremltools' op definitions (float64 references, FP32 programs)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from scipy.special import erf

from tests.unit.coreml._mil import IOS15, IOS17, assert_close, ct, mb, randn, run1

# inputs with exact zeros, both signs, and large magnitudes (saturation / overflow paths)
X = np.concatenate(
    [
        np.array([0.0, -0.0, 1.0, -1.0, 6.0, -6.0, 20.0, -20.0, 90.0, -90.0, 0.5, 2.5]),
        randn(36, seed=1, scale=3.0),
    ]
).astype(np.float32)
X = X.reshape(2, 3, 8)
X64 = X.astype(np.float64)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free form of 1 / (1 + exp(-x))


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


# op -> (builder kwargs, float64 reference, rtol)
CASES: dict[str, tuple[str, dict, Callable[[np.ndarray], np.ndarray], float]] = {
    "relu": ("relu", {}, lambda x: np.maximum(x, 0), 1e-5),
    "relu6": ("relu6", {}, lambda x: np.minimum(np.maximum(x, 0), 6), 1e-5),
    "clip": ("clip", {"alpha": -1.5, "beta": 2.0}, lambda x: np.clip(x, -1.5, 2.0), 1e-5),
    "sigmoid": ("sigmoid", {}, _sigmoid, 1e-4),
    "sigmoid_hard": (
        "sigmoid_hard",
        {"alpha": 0.3, "beta": 0.4},
        lambda x: np.minimum(np.maximum(0.3 * x + 0.4, 0), 1),
        1e-5,
    ),
    "tanh": ("tanh", {}, np.tanh, 1e-4),
    "scaled_tanh": (
        "scaled_tanh",
        {"alpha": 1.5, "beta": 0.7},
        lambda x: 1.5 * np.tanh(0.7 * x),
        1e-4,
    ),
    "gelu-exact": ("gelu", {"mode": "EXACT"}, lambda x: 0.5 * x * (1 + erf(x / np.sqrt(2))), 1e-4),
    "gelu-tanh": (
        "gelu",
        {"mode": "TANH_APPROXIMATION"},
        lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3))),
        1e-4,
    ),
    "gelu-sigmoid": (
        "gelu",
        {"mode": "SIGMOID_APPROXIMATION"},
        lambda x: x * _sigmoid(1.702 * x),
        1e-4,
    ),
    "silu": ("silu", {}, lambda x: x * _sigmoid(x), 1e-4),
    "leaky_relu": ("leaky_relu", {"alpha": 0.15}, lambda x: np.where(x >= 0, x, 0.15 * x), 1e-5),
    # elu: x if x > 0 else alpha * (exp(x) - 1)
    "elu": (
        "elu",
        {"alpha": 0.7},
        lambda x: np.where(x > 0, x, 0.7 * np.expm1(np.minimum(x, 0))),
        1e-4,
    ),
    "softplus": ("softplus", {}, _softplus, 1e-4),
    "softsign": ("softsign", {}, lambda x: x / (1 + np.abs(x)), 1e-5),
    "linear_activation": (
        "linear_activation",
        {"alpha": -2.0, "beta": 0.5},
        lambda x: -2 * x + 0.5,
        1e-5,
    ),
    # thresholded_relu: x if x >= alpha else 0 (X holds exact 1.0 == alpha)
    "thresholded_relu": (
        "thresholded_relu",
        {"alpha": 1.0},
        lambda x: np.where(x >= 1.0, x, 0),
        1e-5,
    ),
    # clamped_relu: min(beta, x) if x >= 0 else min(beta, alpha * x)
    "clamped_relu": (
        "clamped_relu",
        {"alpha": 0.2, "beta": 5.0},
        lambda x: np.minimum(np.where(x >= 0, x, 0.2 * x), 5.0),
        1e-5,
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_activation(case: tuple) -> None:
    op, kwargs, reference, rtol = case
    out = run1(lambda x: getattr(mb, op)(x=x, **kwargs), [X], expect_ops=[op])
    assert_close(out, reference(X64), rtol=rtol)


@pytest.mark.parametrize("axis", [-1, 0, 1, -2])
def test_softmax(axis: int) -> None:
    out = run1(lambda x: mb.softmax(x=x, axis=axis), [X], expect_ops=["softmax"])
    shifted = X64 - X64.max(axis=axis, keepdims=True)
    expected = np.exp(shifted) / np.exp(shifted).sum(axis=axis, keepdims=True)
    assert_close(out, expected, rtol=1e-4)  # exp: transcendental


def test_softmax_default_axis_is_last() -> None:
    out = run1(lambda x: mb.softmax(x=x), [X], expect_ops=["softmax"])
    expected = np.exp(X64 - X64.max(axis=-1, keepdims=True))
    assert_close(out, expected / expected.sum(axis=-1, keepdims=True), rtol=1e-4)  # exp


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 3, 2, 2, 2)])
def test_prelu_per_channel(shape: tuple[int, ...]) -> None:
    x = randn(*shape, seed=2)
    # rank 5 (and 3) only support one shared slope (coremltools' type inference)
    alpha = (
        np.array([0.1, -0.3, 2.0], np.float32) if len(shape) == 4 else np.full(3, 0.25, np.float32)
    )
    # the default passes turn a shared-slope prelu into leaky_relu: keep the op
    out = run1(
        lambda x: mb.prelu(x=x, alpha=alpha),
        [x],
        expect_ops=["prelu"],
        pass_pipeline=ct.PassPipeline.EMPTY,
    )
    slope = alpha.reshape(1, 3, *([1] * (len(shape) - 2))).astype(np.float64)
    assert_close(out, np.where(x > 0, x, slope * x), rtol=1e-5)


def test_softplus_parametric_per_channel() -> None:
    x = randn(2, 3, 4, 5, seed=3, scale=4.0)
    alpha = np.array([0.5, 1.0, 2.0], np.float32)
    beta = np.array([1.0, -0.5, 3.0], np.float32)
    out = run1(
        lambda x: mb.softplus_parametric(x=x, alpha=alpha, beta=beta),
        [x],
        expect_ops=["softplus_parametric"],
    )
    a = alpha.reshape(1, 3, 1, 1).astype(np.float64)
    b = beta.reshape(1, 3, 1, 1).astype(np.float64)
    assert_close(out, a * _softplus(b * x), rtol=1e-4)  # log/exp: transcendental


@pytest.mark.parametrize("target", [IOS15, IOS17], ids=["iOS15", "iOS17"])
def test_activation_alpha_in_both_opsets(target: object) -> None:
    """iOS17 re-declares the alpha/beta activations (alpha typed like x): same kernels."""
    out = run1(lambda x: mb.leaky_relu(x=x, alpha=0.25), [X], target=target)
    assert_close(out, np.where(X64 >= 0, X64, 0.25 * X64), rtol=1e-5)
