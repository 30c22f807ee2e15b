"""Reductions (MIL ``reduce_*``): ``axes`` None reduces every axis."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edgepack.emulators.coreml.ops._util import axis_list


def _reduce(function: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    def kernel(x: np.ndarray, axes: Any = None, keep_dims: bool = False) -> np.ndarray:
        return function(x, axis=axis_list(axes, x.ndim), keepdims=bool(keep_dims))

    return kernel


def _arg(function: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    def kernel(
        x: np.ndarray, axis: int = -1, keep_dims: bool = False, output_dtype: str = "int32"
    ) -> np.ndarray:
        """Index of the first extreme value (``output_dtype``, iOS17: the program's output
        dtype, int32 or uint16, is applied by the interpreter)."""
        result = function(x, axis=int(axis))
        return np.expand_dims(result, int(axis)) if keep_dims else result

    return kernel


def _log_sum_exp(x: np.ndarray, axis: Any, keepdims: bool) -> np.ndarray:
    peak = np.max(x, axis=axis, keepdims=True)
    result = np.log(np.sum(np.exp(x - peak), axis=axis, keepdims=True)) + peak
    return result if keepdims else np.squeeze(result, axis=axis)


KERNELS: dict[str, Callable[..., Any]] = {
    "reduce_sum": _reduce(np.sum),
    "reduce_mean": _reduce(np.mean),
    "reduce_max": _reduce(np.max),
    "reduce_min": _reduce(np.min),
    "reduce_prod": _reduce(np.prod),
    "reduce_l1_norm": _reduce(
        lambda x, axis, keepdims: np.sum(np.abs(x), axis=axis, keepdims=keepdims)
    ),
    "reduce_l2_norm": _reduce(
        lambda x, axis, keepdims: np.sqrt(np.sum(np.square(x), axis=axis, keepdims=keepdims))
    ),
    "reduce_sum_square": _reduce(
        lambda x, axis, keepdims: np.sum(np.square(x), axis=axis, keepdims=keepdims)
    ),
    "reduce_log_sum": _reduce(
        lambda x, axis, keepdims: np.log(np.sum(x, axis=axis, keepdims=keepdims))
    ),
    "reduce_log_sum_exp": _reduce(_log_sum_exp),
    "reduce_argmax": _arg(np.argmax),
    "reduce_argmin": _arg(np.argmin),
}
