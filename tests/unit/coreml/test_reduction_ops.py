"""Reduction kernels (MIL ``reduce_*``) of the Core ML emulator against NumPy references in
float64 (FP32 programs)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.coreml._mil import IOS15, IOS17, assert_close, mb, randn, run1

X = randn(2, 3, 4, 5, seed=1)
POSITIVE = np.abs(X) + 0.5


def _log_sum_exp(x: np.ndarray, axis: tuple | None, keepdims: bool) -> np.ndarray:
    peak = np.max(x, axis=axis, keepdims=True)
    result = np.log(np.sum(np.exp(x - peak), axis=axis, keepdims=True)) + peak
    return result if keepdims else np.squeeze(result, axis=axis)


# op -> (input, float64 reference(x, axis, keepdims), rtol)
REDUCTIONS = {
    "reduce_sum": (X, np.sum, 1e-5),
    "reduce_mean": (X, np.mean, 1e-5),
    "reduce_max": (X, np.max, 1e-5),
    "reduce_min": (X, np.min, 1e-5),
    "reduce_prod": (POSITIVE * 0.8, np.prod, 1e-5),
    "reduce_l1_norm": (
        X,
        lambda x, axis, keepdims: np.sum(np.abs(x), axis, keepdims=keepdims),
        1e-5,
    ),
    "reduce_l2_norm": (
        X,
        lambda x, axis, keepdims: np.sqrt(np.sum(x * x, axis, keepdims=keepdims)),
        1e-5,
    ),
    "reduce_sum_square": (
        X,
        lambda x, axis, keepdims: np.sum(x * x, axis, keepdims=keepdims),
        1e-5,
    ),
    "reduce_log_sum": (
        POSITIVE,
        lambda x, axis, keepdims: np.log(np.sum(x, axis, keepdims=keepdims)),
        1e-4,
    ),
    "reduce_log_sum_exp": (X * 10, _log_sum_exp, 1e-4),
}

AXES = {
    "one": [1],
    "negative-and-first": [-1, 0],
    "middle-two": [1, 2],
    "all-listed": [0, 1, 2, 3],
    "all-default": None,
}


@pytest.mark.parametrize("keep_dims", [False, True], ids=["drop", "keep"])
@pytest.mark.parametrize("axes", AXES.values(), ids=AXES.keys())
@pytest.mark.parametrize("op", REDUCTIONS, ids=REDUCTIONS)
def test_reduce(op: str, axes: list[int] | None, keep_dims: bool) -> None:
    x, reference, rtol = REDUCTIONS[op]
    kwargs = {"keep_dims": keep_dims} if axes is None else {"axes": axes, "keep_dims": keep_dims}
    out = run1(lambda x: getattr(mb, op)(x=x, **kwargs), [x], expect_ops=[op])
    axis = None if axes is None else tuple(a % x.ndim for a in axes)
    expected = np.asarray(reference(x.astype(np.float64), axis=axis, keepdims=keep_dims))
    assert_close(out, expected, rtol=rtol)


@pytest.mark.parametrize("target", [IOS15, IOS17], ids=["iOS15", "iOS17"])
@pytest.mark.parametrize("keep_dims", [False, True], ids=["drop", "keep"])
@pytest.mark.parametrize("axis", [-1, 0, 2, -3])
@pytest.mark.parametrize("op", ["reduce_argmax", "reduce_argmin"])
def test_reduce_arg(op: str, axis: int, keep_dims: bool, target: object) -> None:
    out = run1(
        lambda x: getattr(mb, op)(x=x, axis=axis, keep_dims=keep_dims),
        [X],
        target=target,
        expect_ops=[op],
    )
    expected = (np.argmax if op == "reduce_argmax" else np.argmin)(X, axis=axis)
    if keep_dims:
        expected = np.expand_dims(expected, axis)
    assert out.dtype == np.int32
    assert out.tolist() == expected.tolist()


def test_reduce_argmax_uint16_output_ios17() -> None:
    out = run1(
        lambda x: mb.cast(x=mb.reduce_argmax(x=x, axis=1, output_dtype="uint16"), dtype="int32"),
        [X],
        expect_ops=["reduce_argmax"],
    )
    assert out.tolist() == np.argmax(X, axis=1).tolist()


def test_reduce_argmax_default_axis_is_last() -> None:
    out = run1(lambda x: mb.reduce_argmax(x=x), [X], expect_ops=["reduce_argmax"])
    assert out.tolist() == np.argmax(X, axis=-1).tolist()


def test_reduce_of_int32() -> None:
    x = np.arange(-12, 12, dtype=np.int32).reshape(4, 6)
    out = run1(lambda x: mb.reduce_sum(x=x, axes=[0]), [x], expect_ops=["reduce_sum"])
    assert out.dtype == np.int32
    assert out.tolist() == x.sum(axis=0).tolist()
