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
    return x[_slice_index(x.ndim, begin, end, stride, begin_mask, end_mask, squeeze_mask)]


def slice_update(
    x: np.ndarray,
    update: np.ndarray,
    begin: Any,
    end: Any,
    stride: Any = None,
    begin_mask: Any = None,
    end_mask: Any = None,
    squeeze_mask: Any = None,
) -> np.ndarray:
    """``x`` with the slice :func:`slice_by_index` would take replaced by ``update``."""
    output = np.array(x, copy=True)
    where = _slice_index(x.ndim, begin, end, stride, begin_mask, end_mask, squeeze_mask)
    output[where] = np.asarray(update).reshape(output[where].shape)
    return output


def _slice_index(
    rank: int,
    begin: Any,
    end: Any,
    stride: Any,
    begin_mask: Any,
    end_mask: Any,
    squeeze_mask: Any,
) -> tuple[Any, ...]:
    """The NumPy index of MIL's slice arguments (masks neglect begin or end; a squeezed axis
    is the single index ``begin``)."""
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
    return tuple(index)


def reshape_like(
    x: np.ndarray,
    ref_tensors: tuple[np.ndarray, ...],
    begins: tuple[int, ...],
    ends: tuple[int, ...],
    end_masks: tuple[bool, ...],
) -> np.ndarray:
    """``x`` reshaped to the concatenation of ``ref_tensors[i].shape[begins[i]:ends[i]]``
    (to the end where ``end_masks[i]``)."""
    shape: list[int] = []
    for ref, start, stop, to_end in zip(ref_tensors, begins, ends, end_masks, strict=True):
        dims = np.shape(ref)
        shape.extend(dims[int(start) :] if bool(to_end) else dims[int(start) : int(stop)])
    return np.reshape(x, shape)


def pixel_unshuffle(x: np.ndarray, downscale_factor: int) -> np.ndarray:
    """The inverse of ``pixel_shuffle``: ``[n, c, h * r, w * r]`` -> ``[n, c * r * r, h, w]``."""
    n, c, h, w = x.shape
    r = int(downscale_factor)
    y = x.reshape(n, c, h // r, r, w // r, r).transpose(0, 1, 3, 5, 2, 4)
    return y.reshape(n, c * r * r, h // r, w // r)


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


def crop(x: np.ndarray, crop_height: Any, crop_width: Any) -> np.ndarray:
    """The last two axes cut by ``crop_height`` (top, bottom) and ``crop_width`` (left,
    right)."""
    top, bottom = (int(v) for v in np.ravel(crop_height))
    left, right = (int(v) for v in np.ravel(crop_width))
    return x[..., top : x.shape[-2] - bottom, left : x.shape[-1] - right]


def reverse_sequence(
    x: np.ndarray, lengths: Any, seq_axis: int = 0, batch_axis: int = 0
) -> np.ndarray:
    """For each index ``b`` of ``batch_axis``, the first ``lengths[b]`` elements along
    ``seq_axis`` reversed (TensorFlow's reverse_sequence)."""
    seq_axis, batch_axis = int(seq_axis) % x.ndim, int(batch_axis) % x.ndim
    output = np.array(x, copy=True)
    for b, length in enumerate(np.ravel(lengths).astype(int)):
        where: list[Any] = [slice(None)] * x.ndim
        where[batch_axis] = b
        where[seq_axis] = slice(0, length)
        reversed_at = seq_axis - (1 if batch_axis < seq_axis else 0)  # the batch axis is gone
        output[tuple(where)] = np.flip(x[tuple(where)], axis=reversed_at)
    return output


def space_to_batch(x: np.ndarray, block_shape: Any, paddings: Any) -> np.ndarray:
    """``[n, C, H, W]`` -> ``[n * bh * bw, C, H' / bh, W' / bw]`` after padding H and W;
    output batch ``(i * bw + j) * n + b`` holds block offset ``(i, j)`` of image ``b``
    (TensorFlow's space_to_batch_nd order)."""
    bh, bw = (int(v) for v in np.ravel(block_shape))
    (top, bottom), (left, right) = np.asarray(paddings, dtype=int).reshape(2, 2)
    padded = np.pad(x, [(0, 0), (0, 0), (top, bottom), (left, right)])
    n, c, h, w = padded.shape
    blocks = padded.reshape(n, c, h // bh, bh, w // bw, bw).transpose(3, 5, 0, 1, 2, 4)
    return blocks.reshape(bh * bw * n, c, h // bh, w // bw)


def batch_to_space(x: np.ndarray, block_shape: Any, crops: Any) -> np.ndarray:
    """The inverse of :func:`space_to_batch`, then ``crops`` cut from H and W."""
    bh, bw = (int(v) for v in np.ravel(block_shape))
    (top, bottom), (left, right) = np.asarray(crops, dtype=int).reshape(2, 2)
    batch, c, h, w = x.shape
    n = batch // (bh * bw)
    images = x.reshape(bh, bw, n, c, h, w).transpose(2, 3, 4, 0, 5, 1)
    images = images.reshape(n, c, h * bh, w * bw)
    return images[:, :, top : h * bh - bottom, left : w * bw - right]


def sliding_windows(x: np.ndarray, axis: int, size: int, stride: int = 1) -> np.ndarray:
    """Every window of ``size`` along ``axis``, ``stride`` apart: the output has a new axis
    of ``size`` after ``axis``, which has ``(d - size) // stride + 1`` windows."""
    axis, size, stride = int(axis) % x.ndim, int(size), int(stride)
    windows = np.lib.stride_tricks.sliding_window_view(x, size, axis=axis)
    windows = np.take(windows, np.arange(0, windows.shape[axis], stride), axis=axis)
    return np.ascontiguousarray(np.moveaxis(windows, -1, axis + 1))


def flatten2d(x: np.ndarray, axis: int = 1) -> np.ndarray:
    """``[prod(shape[:axis]), prod(shape[axis:])]`` with Python slicing of the shape, as
    coremltools defines it: ``axis`` equal to the rank gives ``(N, 1)``."""
    axis = int(axis)
    return x.reshape(int(np.prod(x.shape[:axis])), int(np.prod(x.shape[axis:])))


KERNELS: dict[str, Callable[..., Any]] = {
    "crop": crop,
    "reverse_sequence": reverse_sequence,
    "space_to_batch": space_to_batch,
    "batch_to_space": batch_to_space,
    "sliding_windows": sliding_windows,
    "reshape": reshape,
    "transpose": lambda x, perm: np.transpose(x, [int(p) for p in np.atleast_1d(perm)]),
    "concat": concat,
    "split": split,
    "slice_by_index": slice_by_index,
    "slice_update": slice_update,
    "reshape_like": reshape_like,
    "pixel_unshuffle": pixel_unshuffle,
    "fill_like": lambda ref_tensor, value=0.0: np.full(np.shape(ref_tensor), value),
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
    "flatten2d": flatten2d,
    "shape": lambda x: np.array(x.shape, dtype=np.int32),
    "identity": lambda x: np.array(x, copy=True),
    "reverse": lambda x, axes=None: np.flip(x, axis=axis_list(axes, x.ndim)),
    "fill": lambda shape, value=0.0: np.full([int(v) for v in np.atleast_1d(shape)], value),
    "range_1d": lambda end, start, step: np.arange(start, end, step),
    "stack": lambda values, axis: np.stack(values, axis=int(axis)),
}
