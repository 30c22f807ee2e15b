"""The scatter family (iOS15 and iOS17): ``scatter``, ``scatter_along_axis``, ``scatter_nd``.

Semantics from coremltools' op definitions (``ops/defs/iOS15/scatter_gather.py``,
``iOS17/scatter_gather.py``): the output starts as ``data``; each update is combined with the
value at its index by ``mode`` (``update`` replaces; ``add``, ``sub``, ``mul``, ``div``,
``max``, ``min`` combine ``output <- output (op) update``), in index order, so repeated indices
accumulate. iOS15 reads negative indices from the end of the axis. iOS17 calls negative
indices out of bounds: with ``validate_indices`` an out-of-bounds index is an error; without it
Core ML's behaviour is undefined, and here those updates are dropped (the elements keep
``data``), so that the result differs from any in-bounds reading.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

MODES = ("update", "add", "sub", "mul", "div", "max", "min")


def scatter(
    data: np.ndarray,
    indices: np.ndarray,
    updates: np.ndarray,
    axis: int = 0,
    mode: str = "add",
    validate_indices: bool = False,
    wrap: bool = True,
) -> np.ndarray:
    """``output[..., indices[i], ...] (op)= updates[..., i, ...]`` along ``axis``."""
    axis = int(axis) % data.ndim
    output = np.moveaxis(np.array(data, copy=True), axis, 0)
    rows = _positions(indices, data.shape[axis], validate_indices, wrap)
    _combine(output, (rows,), np.moveaxis(np.asarray(updates), axis, 0), mode)
    return np.moveaxis(output, 0, axis)


def scatter_along_axis(
    data: np.ndarray,
    indices: np.ndarray,
    updates: np.ndarray,
    axis: int = 0,
    mode: str = "add",
    validate_indices: bool = False,
    wrap: bool = True,
) -> np.ndarray:
    """``output[p_0, ..., indices[p], ..., p_D] (op)= updates[p]`` for every position ``p``
    of ``indices`` (the same shape as ``updates``, the rank of ``data``)."""
    axis = int(axis) % data.ndim
    output = np.array(data, copy=True)
    grid: list[Any] = list(np.indices(np.shape(indices), sparse=True))
    grid[axis] = _positions(indices, data.shape[axis], validate_indices, wrap)
    _combine(output, tuple(grid), np.asarray(updates), mode)
    return output


def scatter_nd(
    data: np.ndarray,
    indices: np.ndarray,
    updates: np.ndarray,
    mode: str = "add",
    validate_indices: bool = False,
    wrap: bool = True,
) -> np.ndarray:
    """``output[indices[i_0, ..., i_{K-2}]] (op)= updates[i_0, ..., i_{K-2}]``: the last axis
    of ``indices`` indexes the leading ``indices.shape[-1]`` axes of ``data``."""
    output = np.array(data, copy=True)
    index = np.asarray(indices)
    depth = index.shape[-1]
    where = tuple(
        _positions(index[..., k], data.shape[k], validate_indices, wrap) for k in range(depth)
    )
    _combine(output, where, np.asarray(updates), mode)
    return output


def _positions(indices: Any, size: int, validate: bool, wrap: bool) -> np.ndarray:
    """Indices as positions on an axis of ``size``. ``wrap`` (iOS15): negative ones count from
    the end. Otherwise (iOS17) an index outside ``[0, size)`` is an error when ``validate``,
    else -1: no position (its update is dropped)."""
    index = np.asarray(indices, dtype=np.int64)
    if wrap:
        index = np.where(index < 0, index + size, index)
    outside = (index < 0) | (index >= size)
    if np.any(outside) and (validate or wrap):
        raise IndexError(f"scatter: indices out of bounds for an axis of {size}: {index[outside]}")
    return np.where(outside, -1, index)


def _combine(output: np.ndarray, where: tuple[Any, ...], updates: np.ndarray, mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"scatter mode must be one of {MODES}, got {mode!r}")
    values = updates.astype(output.dtype, copy=False)
    shape = np.broadcast_shapes(*(np.shape(w) for w in where))
    valid = np.ones(shape, dtype=bool)
    for w in where:
        valid &= np.broadcast_to(np.asarray(w) >= 0, shape)
    if not valid.all():  # iOS17's unvalidated out-of-bounds updates: dropped
        where = tuple(np.broadcast_to(w, shape)[valid] for w in where)
        values = np.broadcast_to(values, (*shape, *values.shape[len(shape) :]))[valid]
    if mode == "update":
        _update_in_order(output, where, values)
        return
    ufunc = _UFUNCS[mode]
    if mode == "div" and output.dtype.kind in "iu":
        ufunc = np.floor_divide
    ufunc.at(output, where, values)


def _update_in_order(output: np.ndarray, where: tuple[Any, ...], values: np.ndarray) -> None:
    """Assignment; where an index repeats, the last update wins, as applied in order (NumPy's
    own assignment leaves the order of repeated indices unspecified)."""
    shape = np.broadcast_shapes(*(np.shape(w) for w in where))
    flat = [np.broadcast_to(w, shape).ravel() for w in where]
    linear = np.ravel_multi_index(flat, output.shape[: len(where)])
    if len(np.unique(linear)) == len(linear):
        output[where] = values
        return
    block = np.broadcast_to(values, (*shape, *output.shape[len(where) :])).reshape(
        len(linear), *output.shape[len(where) :]
    )
    for position, target in enumerate(zip(*flat, strict=True)):
        output[target] = block[position]


_UFUNCS: dict[str, np.ufunc] = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": np.divide,
    "max": np.maximum,
    "min": np.minimum,
}

KERNELS: dict[str, Callable[..., Any]] = {
    "scatter": scatter,
    "scatter_along_axis": scatter_along_axis,
    "scatter_nd": scatter_nd,
}
# iOS17 on: negative indices are out of bounds
VERSIONED: dict[tuple[str, int], Callable[..., Any]] = {
    (name, 17): functools.partial(kernel, wrap=False) for name, kernel in KERNELS.items()
}
