"""Shape and indexing ops: reshape, transpose, concat, split, slices, pad, gather, tile, ..."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edgepack.emulators.coreml.ops._util import axis_list


def reshape(x: np.ndarray, shape: Any) -> np.ndarray:
    """``-1`` infers one axis; ``0`` copies the input dimension at the same position counted
    from the right, or is 1 past the input's rank (iOS17; iOS15/16 require ``len(shape) ==
    rank``, where both readings agree)."""
    target = [int(v) for v in np.atleast_1d(shape)]
    offset = x.ndim - len(target)  # shape[i] matches x.shape[i + offset]
    target = [
        (x.shape[i + offset] if i + offset >= 0 else 1) if v == 0 else v
        for i, v in enumerate(target)
    ]
    return np.reshape(x, target)


def concat(values: tuple[np.ndarray, ...], axis: int, interleave: bool = False) -> np.ndarray:
    if not interleave:
        return np.concatenate(values, axis=int(axis))
    axis = int(axis) % values[0].ndim
    stacked = np.stack(values, axis=axis + 1)
    shape = list(values[0].shape)
    shape[axis] = shape[axis] * len(values)
    return stacked.reshape(shape)


def split(
    x: np.ndarray, num_splits: int | None = None, split_sizes: Any = None, axis: int = 0
) -> tuple[np.ndarray, ...]:
    axis = int(axis)
    if split_sizes is not None:
        bounds = np.cumsum([int(v) for v in np.atleast_1d(split_sizes)])[:-1]
        return tuple(np.split(x, bounds, axis=axis))
    return tuple(np.split(x, int(num_splits), axis=axis))  # type: ignore[arg-type]


def slice_by_index(
    x: np.ndarray,
    begin: Any,
    end: Any,
    stride: Any = None,
    begin_mask: Any = None,
    end_mask: Any = None,
    squeeze_mask: Any = None,
) -> np.ndarray:
    rank = x.ndim
    begin_ = np.atleast_1d(begin).astype(int)
    end_ = np.atleast_1d(end).astype(int)
    stride_ = np.ones(rank, int) if stride is None else np.atleast_1d(stride).astype(int)
    begin_mask_ = np.zeros(rank, bool) if begin_mask is None else np.atleast_1d(begin_mask)
    end_mask_ = np.zeros(rank, bool) if end_mask is None else np.atleast_1d(end_mask)
    squeeze_ = np.zeros(rank, bool) if squeeze_mask is None else np.atleast_1d(squeeze_mask)
    index: list[Any] = []
    for axis in range(rank):
        if squeeze_[axis]:
            index.append(int(begin_[axis]))
            continue
        start = None if begin_mask_[axis] else int(begin_[axis])
        stop = None if end_mask_[axis] else int(end_[axis])
        index.append(slice(start, stop, int(stride_[axis])))
    return x[tuple(index)]


def slice_by_size(x: np.ndarray, begin: Any, size: Any) -> np.ndarray:
    index = []
    for axis, (raw_start, length) in enumerate(
        zip(np.atleast_1d(begin), np.atleast_1d(size), strict=True)
    ):
        start = int(raw_start) % x.shape[axis] if int(raw_start) < 0 else int(raw_start)
        stop = x.shape[axis] if int(length) == -1 else start + int(length)
        index.append(slice(start, stop))
    return x[tuple(index)]


def pad(x: np.ndarray, pad: Any, mode: str = "constant", constant_val: float = 0.0) -> np.ndarray:
    """``pad`` is [begin, end] pairs for the trailing axes."""
    values = [int(v) for v in np.atleast_1d(pad)]
    pairs = [(values[2 * i], values[2 * i + 1]) for i in range(len(values) // 2)]
    widths = [(0, 0)] * (x.ndim - len(pairs)) + pairs
    if mode == "constant":
        return np.pad(x, widths, mode="constant", constant_values=constant_val)
    numpy_mode: Any = {"reflect": "reflect", "replicate": "edge"}[str(mode)]
    return np.pad(x, widths, mode=numpy_mode)


def squeeze(x: np.ndarray, axes: Any = None) -> np.ndarray:
    """Listed axes that are not single are left alone (PyTorch behaviour, as MIL defines)."""
    normalised = axis_list(axes, x.ndim)
    if normalised is None:
        return np.squeeze(x)
    return np.squeeze(x, axis=tuple(a for a in normalised if x.shape[a] == 1))


def expand_dims(x: np.ndarray, axes: Any) -> np.ndarray:
    rank = x.ndim + len(np.atleast_1d(axes))
    return np.expand_dims(x, axis=tuple(sorted(int(a) % rank for a in np.atleast_1d(axes))))


def gather(
    x: np.ndarray, indices: Any, axis: int = 0, batch_dims: int = 0, validate_indices: bool = False
) -> np.ndarray:
    axis = int(axis) % x.ndim
    idx = np.asarray(indices).astype(np.int64)
    idx = np.where(idx < 0, idx + x.shape[axis], idx)
    if int(batch_dims) == 0:
        return np.take(x, idx, axis=axis)
    batch = int(batch_dims)
    outer = int(np.prod(x.shape[:batch]))
    xs = x.reshape(outer, *x.shape[batch:])
    ids = idx.reshape(outer, *idx.shape[batch:])
    parts = [np.take(xs[i], ids[i], axis=axis - batch) for i in range(outer)]
    return np.stack(parts).reshape(*x.shape[:batch], *parts[0].shape)


def gather_along_axis(
    x: np.ndarray, indices: Any, axis: int = 0, validate_indices: bool = False
) -> np.ndarray:
    idx = np.asarray(indices).astype(np.int64)
    idx = np.where(idx < 0, idx + x.shape[int(axis)], idx)
    return np.take_along_axis(x, idx, axis=int(axis))


def gather_nd(
    x: np.ndarray, indices: Any, batch_dims: int = 0, validate_indices: bool = False
) -> np.ndarray:
    idx = np.asarray(indices).astype(np.int64)
    batch = int(batch_dims)
    if batch == 0:
        return x[tuple(np.moveaxis(idx, -1, 0))]
    outer = int(np.prod(x.shape[:batch]))
    xs = x.reshape(outer, *x.shape[batch:])
    ids = idx.reshape(outer, *idx.shape[batch:])
    parts = [xs[i][tuple(np.moveaxis(ids[i], -1, 0))] for i in range(outer)]
    return np.stack(parts).reshape(*idx.shape[:batch], *parts[0].shape)


def tile(x: np.ndarray, reps: Any) -> np.ndarray:
    return np.tile(x, [int(v) for v in np.atleast_1d(reps)])


def space_to_depth(x: np.ndarray, block_size: int) -> np.ndarray:
    n, c, h, w = x.shape
    b = int(block_size)
    y = x.reshape(n, c, h // b, b, w // b, b).transpose(0, 3, 5, 1, 2, 4)
    return y.reshape(n, c * b * b, h // b, w // b)


def depth_to_space(x: np.ndarray, block_size: int) -> np.ndarray:
    n, c, h, w = x.shape
    b = int(block_size)
    y = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    return y.reshape(n, c // (b * b), h * b, w * b)


def pixel_shuffle(x: np.ndarray, upscale_factor: int) -> np.ndarray:
    n, c, h, w = x.shape
    r = int(upscale_factor)
    y = x.reshape(n, c // (r * r), r, r, h, w).transpose(0, 1, 4, 2, 5, 3)
    return y.reshape(n, c // (r * r), h * r, w * r)


def band_part(x: np.ndarray, lower: int = -1, upper: int = -1) -> np.ndarray:
    rows, cols = x.shape[-2:]
    i = np.arange(rows)[:, None]
    j = np.arange(cols)[None, :]
    keep = np.ones((rows, cols), bool)
    if int(lower) >= 0:
        keep &= (i - j) <= int(lower)
    if int(upper) >= 0:
        keep &= (j - i) <= int(upper)
    return np.where(keep, x, 0)


KERNELS: dict[str, Callable[..., Any]] = {
    "reshape": reshape,
    "transpose": lambda x, perm: np.transpose(x, [int(p) for p in np.atleast_1d(perm)]),
    "concat": concat,
    "split": split,
    "slice_by_index": slice_by_index,
    "slice_by_size": slice_by_size,
    "pad": pad,
    "squeeze": squeeze,
    "expand_dims": expand_dims,
    "gather": gather,
    "gather_along_axis": gather_along_axis,
    "gather_nd": gather_nd,
    "tile": tile,
    "space_to_depth": space_to_depth,
    "depth_to_space": depth_to_space,
    "pixel_shuffle": pixel_shuffle,
    "band_part": band_part,
    "flatten2d": lambda x, axis=1: x.reshape(
        int(np.prod(x.shape[: int(axis) % x.ndim] or [1])), -1
    ),
    "shape": lambda x: np.array(x.shape, dtype=np.int32),
    "identity": lambda x: np.array(x, copy=True),
    "reverse": lambda x, axes=None: np.flip(x, axis=axis_list(axes, x.ndim)),
    "fill": lambda shape, value=0.0: np.full([int(v) for v in np.atleast_1d(shape)], value),
    "range_1d": lambda end, start, step: np.arange(start, end, step),
    "stack": lambda values, axis: np.stack(values, axis=int(axis)),
}
