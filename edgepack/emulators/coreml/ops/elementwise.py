"""Elementwise unary and binary ops with NumPy broadcasting (MIL ``elementwise_*``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edgepack.emulators.coreml.ops._util import binary, unary
from edgepack.emulators.coreml.ops.activation import _erf


def _floor_div(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (
        np.floor_divide(x, y)
        if np.issubdtype(np.result_type(x, y), np.integer)
        else np.floor(x / y)
    )


def _real_div(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    result = np.true_divide(x, y)
    both_int = np.issubdtype(np.asarray(x).dtype, np.integer) and np.issubdtype(
        np.asarray(y).dtype, np.integer
    )
    return np.floor(result) if both_int else result


KERNELS: dict[str, Callable[..., Any]] = {
    "add": binary(np.add),
    "sub": binary(np.subtract),
    "mul": binary(np.multiply),
    "real_div": _real_div,
    "floor_div": _floor_div,
    "mod": binary(np.mod),
    "pow": binary(np.power),
    "maximum": binary(np.maximum),
    "minimum": binary(np.minimum),
    "equal": binary(np.equal),
    "not_equal": binary(np.not_equal),
    "greater": binary(np.greater),
    "greater_equal": binary(np.greater_equal),
    "less": binary(np.less),
    "less_equal": binary(np.less_equal),
    "logical_and": binary(np.logical_and),
    "logical_or": binary(np.logical_or),
    "logical_xor": binary(np.logical_xor),
    "logical_not": unary(np.logical_not),
    "abs": unary(np.abs),
    "acos": unary(np.arccos),
    "asin": unary(np.arcsin),
    "atan": unary(np.arctan),
    "atanh": unary(np.arctanh),
    "ceil": unary(np.ceil),
    "cos": unary(np.cos),
    "cosh": unary(np.cosh),
    "erf": _erf,
    "exp": unary(np.exp),
    "exp2": unary(np.exp2),
    "floor": unary(np.floor),
    "inverse": lambda x, epsilon=1e-4: 1.0 / (x + epsilon),
    "log": lambda x, epsilon=1e-45: np.log(x + epsilon),
    "round": unary(np.rint),  # MIL: halfway cases to the nearest even value
    "rsqrt": lambda x, epsilon=1e-12: 1.0 / np.sqrt(x + epsilon),
    "sign": unary(np.sign),
    "sin": unary(np.sin),
    "sinh": unary(np.sinh),
    "sqrt": unary(np.sqrt),
    "square": unary(np.square),
    "tan": unary(np.tan),
    "threshold": lambda x, alpha: np.maximum(x, alpha),  # noqa: PLW0108 (MIL's input names)
}
