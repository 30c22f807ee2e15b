"""Elementwise unary and binary ops with NumPy broadcasting (MIL ``elementwise_*``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

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
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "real_div": _real_div,
    "floor_div": _floor_div,
    "mod": np.mod,
    "pow": np.power,
    "maximum": np.maximum,
    "minimum": np.minimum,
    "equal": np.equal,
    "not_equal": np.not_equal,
    "greater": np.greater,
    "greater_equal": np.greater_equal,
    "less": np.less,
    "less_equal": np.less_equal,
    "logical_and": np.logical_and,
    "logical_or": np.logical_or,
    "logical_xor": np.logical_xor,
    "logical_not": np.logical_not,
    "abs": np.abs,
    "acos": np.arccos,
    "asin": np.arcsin,
    "atan": np.arctan,
    "atanh": np.arctanh,
    "ceil": np.ceil,
    "cos": np.cos,
    "cosh": np.cosh,
    "erf": _erf,
    "exp": np.exp,
    "exp2": np.exp2,
    "floor": np.floor,
    "inverse": lambda x, epsilon=1e-4: 1.0 / (x + epsilon),
    "log": lambda x, epsilon=1e-45: np.log(x + epsilon),
    "round": np.round,  # MIL: halfway cases to the nearest even value, like NumPy
    "rsqrt": lambda x, epsilon=1e-12: 1.0 / np.sqrt(x + epsilon),
    "sign": np.sign,
    "sin": np.sin,
    "sinh": np.sinh,
    "sqrt": np.sqrt,
    "square": np.square,
    "tan": np.tan,
    "threshold": lambda x, alpha: np.maximum(x, alpha),  # noqa: PLW0108 (MIL's input names)
}
