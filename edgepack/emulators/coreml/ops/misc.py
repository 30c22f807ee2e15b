"""Casts, selection, scans and sorting (MIL ``cast``, ``select``, ``cumsum``, ``topk``, ...)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

CAST_TYPES = {
    "fp16": np.float16,
    "fp32": np.float32,
    "fp64": np.float64,
    "int8": np.int8,
    "uint8": np.uint8,
    "int16": np.int16,
    "uint16": np.uint16,
    "int32": np.int32,
    "int64": np.int64,
    "bool": np.bool_,
}


def cast(x: np.ndarray, dtype: str) -> np.ndarray:
    target = CAST_TYPES[str(dtype)]
    array = np.asarray(x)
    if np.issubdtype(target, np.integer) and np.issubdtype(array.dtype, np.floating):
        array = np.trunc(array)  # float -> int casts truncate toward zero
    return array.astype(target)


def cumsum(
    x: np.ndarray, axis: int = 0, exclusive: bool = False, reverse: bool = False
) -> np.ndarray:
    axis = int(axis)
    values = np.flip(x, axis) if reverse else x
    result = np.cumsum(values, axis=axis)
    if exclusive:
        result = result - values
    return np.flip(result, axis) if reverse else result


def topk(
    x: np.ndarray,
    k: int = 1,
    axis: int = -1,
    ascending: bool = False,
    sort: bool = True,
    return_indices: bool = True,
    output_indices_dtype: str = "int32",
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Top (or bottom, ``ascending``) ``k`` values along ``axis`` and their indices; ``k=-1``
    takes every element (iOS17); only the values when ``return_indices`` is False (iOS16)."""
    axis = int(axis)
    keys = x if ascending else -x
    order = np.argsort(keys, axis=axis, kind="stable")
    count = x.shape[axis] if int(k) == -1 else int(k)
    index = np.take(order, np.arange(count), axis=axis)
    values = np.take_along_axis(x, index, axis=axis)
    if not return_indices:
        return values
    return values, index.astype(np.int32)


def argsort(x: np.ndarray, axis: int = -1, ascending: bool = False) -> np.ndarray:
    keys = x if ascending else -x
    return np.argsort(keys, axis=int(axis), kind="stable").astype(np.int32)


def one_hot(
    indices: np.ndarray,
    one_hot_vector_size: int,
    axis: int = -1,
    on_value: Any = 1,
    off_value: Any = 0,
) -> np.ndarray:
    size = int(one_hot_vector_size)
    hot = np.arange(size) == np.expand_dims(np.asarray(indices), -1)
    result = np.where(hot, on_value, off_value)
    return np.moveaxis(result, -1, int(axis)) if int(axis) != -1 else result


def classify(probabilities: np.ndarray, classes: Any) -> tuple[Any, dict[Any, float]]:
    """Core ML's classifier head: the top class and a {class: probability} dictionary, as
    ``MLModel.predict`` returns them (``classes`` are strings or integers)."""
    values = np.asarray(probabilities, dtype=np.float64).ravel()
    labels = list(classes) if not isinstance(classes, np.ndarray) else classes.ravel().tolist()
    return labels[int(np.argmax(values))], dict(zip(labels, values.tolist(), strict=True))


KERNELS: dict[str, Callable[..., Any]] = {
    "classify": classify,
    "cast": cast,
    "select": lambda cond, a, b: np.where(cond, a, b),  # noqa: PLW0108 (MIL's input names)
    "cumsum": cumsum,
    "topk": topk,
    "argsort": argsort,
    "one_hot": one_hot,
    "non_zero": lambda x: np.argwhere(x).astype(np.int32),
    "clamped_relu": lambda x, alpha=0.0, beta=6.0: np.minimum(np.where(x >= 0, x, alpha * x), beta),
}
