"""Helpers shared by the op kernels."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np


def axis_list(axes: object, rank: int) -> tuple[int, ...] | None:
    """Normalise an ``axes`` input (None, scalar or sequence, negatives allowed)."""
    if axes is None:
        return None
    values = np.atleast_1d(np.asarray(axes)).astype(int).tolist()
    return tuple(sorted(a % rank for a in values))


def int_list(value: object, count: int, default: int) -> list[int]:
    """An ints input (strides, dilations, kernel sizes): ``count`` copies of ``default`` when
    absent."""
    if value is None:
        return [default] * count
    return [int(v) for v in np.atleast_1d(np.asarray(value))]


def spatial_pads(
    in_sizes: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    pad_type: str,
    pad: Sequence[int] | None,
    ceil_mode: bool = False,
) -> list[tuple[int, int]]:
    """(begin, end) padding per spatial axis, as MIL's ``pad_type`` defines it."""
    effective = [(k - 1) * d + 1 for k, d in zip(kernel, dilations, strict=True)]
    if pad_type == "valid":
        pads = [(0, 0)] * len(in_sizes)
    elif pad_type in ("same", "same_lower"):
        pads = []
        for size, k, s in zip(in_sizes, effective, strides, strict=True):
            out = -(-size // s)
            total = max((out - 1) * s + k - size, 0)
            small, large = total // 2, total - total // 2
            pads.append((small, large) if pad_type == "same" else (large, small))
    elif pad_type == "custom":
        values = [int(v) for v in (pad if pad is not None else [0] * 2 * len(in_sizes))]
        pads = [(values[2 * i], values[2 * i + 1]) for i in range(len(in_sizes))]
    else:
        raise ValueError(f"unknown pad_type {pad_type!r}")
    if ceil_mode:
        pads = [
            (begin, end + ceil_mode_overhang(size, k, s, begin, end))
            for (begin, end), size, k, s in zip(pads, in_sizes, effective, strides, strict=True)
        ]
    return pads


def ceil_mode_overhang(size: int, kernel: int, stride: int, begin: int, end: int) -> int:
    """Extra end padding that ``ceil_mode`` needs for its last window (MIL/PyTorch rule:
    ``out = ceil((size + pads - kernel) / stride) + 1``, minus one when that last window
    would start in the end padding)."""
    padded = size + begin + end
    out = -(-(padded - kernel) // stride) + 1
    if (out - 1) * stride >= size + begin and begin + end > 0:
        out -= 1
    return max((out - 1) * stride + kernel - padded, 0)


def broadcast_param(value: np.ndarray, rank: int, axis: int | None) -> np.ndarray:
    """A scalar or per-axis vector (``axis``) shaped to broadcast against a rank-``rank`` tensor."""
    array = np.asarray(value)
    if array.ndim == 0 or axis is None:
        return array
    shape = [1] * rank
    shape[axis % rank] = array.size
    return array.reshape(shape)


def unary(function: Callable[..., Any]) -> Callable[..., np.ndarray]:
    """A NumPy function of one array as a kernel of MIL's ``x`` input (ufuncs take no
    keyword for their operand)."""

    def kernel(x: np.ndarray) -> np.ndarray:
        return function(x)

    kernel.__name__ = getattr(function, "__name__", "unary")
    return kernel


def binary(function: Callable[..., Any]) -> Callable[..., np.ndarray]:
    """A broadcasting NumPy function of two arrays as a kernel of MIL's ``x`` and ``y``."""

    def kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return function(x, y)

    kernel.__name__ = getattr(function, "__name__", "binary")
    return kernel


def window_slices(
    padded: np.ndarray,
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
) -> Iterator[np.ndarray]:
    """For each kernel offset (row-major over the kernel), the strided view of ``padded``
    (N, C, *spatial) that the offset sees in every output window: (N, C, *out).

    Looping over the (few) kernel offsets and working on whole output planes is much faster
    in NumPy than reducing a window view over its trailing axes.
    """
    extents = [(k - 1) * d + 1 for k, d in zip(kernel, dilations, strict=True)]
    outs = [
        (size - extent) // stride + 1
        for size, extent, stride in zip(padded.shape[2:], extents, strides, strict=True)
    ]
    for offset in itertools.product(*(range(k) for k in kernel)):
        index = tuple(
            slice(o * d, o * d + (n - 1) * s + 1, s)
            for o, d, n, s in zip(offset, dilations, outs, strides, strict=True)
        )
        yield padded[(slice(None), slice(None), *index)]


def window_reduce(
    padded: np.ndarray,
    kernel: Sequence[int],
    strides: Sequence[int],
    ufunc: np.ufunc,
    dilations: Sequence[int] | None = None,
) -> np.ndarray:
    """``ufunc`` (np.maximum, np.add) folded over every window of ``padded``."""
    slices = window_slices(padded, kernel, strides, dilations or [1] * len(kernel))
    result = np.array(next(slices), copy=True)
    for part in slices:
        ufunc(result, part, out=result)
    return result


def pad_spatial(x: np.ndarray, pads: Sequence[tuple[int, int]], fill: float = 0.0) -> np.ndarray:
    """``x`` (N, C, *spatial) padded on its spatial axes with ``fill``: one allocation and one
    copy (``np.pad`` costs several times more per call on the small tensors of mobile models)."""
    if not any(begin or end for begin, end in pads):
        return x
    shape = (*x.shape[:2], *(size + b + e for size, (b, e) in zip(x.shape[2:], pads, strict=True)))
    result = np.full(shape, fill, dtype=x.dtype)
    index = tuple(slice(b, b + size) for size, (b, _) in zip(x.shape[2:], pads, strict=True))
    result[(slice(None), slice(None), *index)] = x
    return result
