"""Fast paths specialised at load time for ops whose constants and shapes are known.

The kernels in :mod:`edgepack.emulators.coreml.ops` take every input at every call and work
out padding, reshaped weights and window offsets each time; on the small tensors of mobile
models that bookkeeping costs as much as the arithmetic. A *plan* does it once, when the
program is loaded, for an op whose parameters are constants and whose input shape is static,
and returns a function of the op's runtime tensor alone. Plans compute what the kernels
compute (the per-op tests run through them); where an op does not qualify, the interpreter
calls the kernel.

Convolutions with unit strides use the "wide grid" form of im2col: the padded input is kept
flat per channel, so the window tap (i, j) is one contiguous slice shifted by
``i * dilation * padded_width + j * dilation``; the output is computed on the padded width and
its extra columns are dropped. Copies are contiguous, the matmul reads the gathered taps in
place, and the padded input lives in a buffer whose zero border is written once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from edgepack.emulators.coreml.ops._util import int_list, spatial_pads

Planner = Callable[[Mapping[str, Any], tuple[int, ...]], Callable[[np.ndarray], Any] | None]


class _Scratch(threading.local):
    """Per-thread scratch buffers of one plan (so one emulator may serve several threads)."""

    padded: np.ndarray | None = None
    cols: np.ndarray | None = None


def plan_conv(consts: Mapping[str, Any], x_shape: tuple[int, ...]) -> Callable | None:
    """A 2-d convolution with constant weight (and bias), static input shape."""
    weight = consts.get("weight")
    if weight is None or len(x_shape) != 4 or weight.ndim != 4:
        return None
    n, c, height, width = x_shape
    out_channels, per_group, kh, kw = weight.shape
    strides = int_list(consts.get("strides"), 2, 1)
    dilations = int_list(consts.get("dilations"), 2, 1)
    groups = int(consts.get("groups", 1))
    pads = spatial_pads(
        (height, width),
        (kh, kw),
        strides,
        dilations,
        str(consts.get("pad_type", "valid")),
        consts.get("pad"),
    )
    bias = consts.get("bias")
    bias_column = None if bias is None else np.asarray(bias, np.float32).reshape(-1, 1)
    depthwise = groups == c and out_channels == c and per_group == 1
    if kh == kw == 1 and not any(sum(p) for p in pads) and groups == 1:
        return _pointwise(weight.reshape(out_channels, c), bias_column, strides, (n, c))
    if strides != [1, 1] or not (groups == 1 or depthwise):
        return None
    return _WideConv(weight, bias_column, (n, c, height, width), pads, dilations, depthwise)


def _pointwise(
    weight: np.ndarray, bias: np.ndarray | None, strides: list[int], nc: tuple[int, int]
) -> Callable[[np.ndarray], np.ndarray]:
    sample = (
        slice(None),
        slice(None),
        slice(None, None, strides[0]),
        slice(None, None, strides[1]),
    )
    n, c = nc
    out_channels = weight.shape[0]

    def run(x: np.ndarray) -> np.ndarray:
        sampled = x[sample] if strides != [1, 1] else x
        result = np.matmul(weight, sampled.reshape(n, c, -1))
        if bias is not None:
            result += bias
        return result.reshape(n, out_channels, *sampled.shape[2:])

    return run


class _WideConv:
    """A stride-1 2-d convolution (dense or depthwise) on the wide grid (see module doc)."""

    def __init__(
        self,
        weight: np.ndarray,
        bias: np.ndarray | None,
        shape: tuple[int, int, int, int],
        pads: list[tuple[int, int]],
        dilations: list[int],
        depthwise: bool,
    ) -> None:
        n, c, height, width = shape
        out_channels, _, kh, kw = weight.shape
        (top, bottom), (left, right) = pads
        self.padded_width = width + left + right
        self.out_height = height + top + bottom - (kh - 1) * dilations[0]
        self.out_width = self.padded_width - (kw - 1) * dilations[1]
        # one spare row: the last taps read up to (kw - 1) * dilation past the padded grid
        rows = height + top + bottom + 1
        self.padded_shape = (n, c, rows * self.padded_width)
        self.interior = (
            slice(None),
            slice(None),
            slice(top, top + height),
            slice(left, left + width),
        )
        self.grid = (n, c, rows, self.padded_width)
        self.length = self.out_height * self.padded_width
        self.offsets = [
            i * dilations[0] * self.padded_width + j * dilations[1]
            for i in range(kh)
            for j in range(kw)
        ]
        self.taps = len(self.offsets)
        self.depthwise = depthwise
        self.n, self.c, self.out_channels = n, c, out_channels
        # weight (O, C, kh, kw) -> (O, C * K) matching cols (N, C, K, L) flattened to C * K
        self.weight = (
            weight.reshape(c, 1, self.taps).astype(np.float32)
            if depthwise
            else weight.reshape(out_channels, c * self.taps).astype(np.float32)
        )
        self.bias = bias
        self.scratch = _Scratch()

    def _buffers(self) -> tuple[np.ndarray, np.ndarray]:
        scratch = self.scratch
        if scratch.padded is None or scratch.cols is None:
            scratch.padded = np.zeros(self.padded_shape, np.float32)
            scratch.cols = np.empty((self.n, self.c, self.taps, self.length), np.float32)
        return scratch.padded, scratch.cols

    def __call__(self, x: np.ndarray) -> np.ndarray:
        padded, cols = self._buffers()
        padded.reshape(self.grid)[self.interior] = x
        for k, offset in enumerate(self.offsets):
            cols[:, :, k] = padded[:, :, offset : offset + self.length]
        if self.depthwise:
            result = np.matmul(self.weight, cols)  # (N, C, 1, L)
        else:
            result = np.matmul(self.weight, cols.reshape(self.n, self.c * self.taps, -1))
        result = result.reshape(self.n, self.out_channels, self.length)
        if self.bias is not None:
            result += self.bias
        wide = result.reshape(self.n, self.out_channels, self.out_height, self.padded_width)
        return wide[:, :, :, : self.out_width]


def plan_max_pool(consts: Mapping[str, Any], x_shape: tuple[int, ...]) -> Callable | None:
    """A 2-d max pool without ``ceil_mode``: the window max taken along rows (contiguous),
    then along columns (the same values as over the whole window: max is exact)."""
    if len(x_shape) != 4 or bool(consts.get("ceil_mode", False)):
        return None
    kernel = int_list(consts.get("kernel_sizes"), 2, 1)
    strides = int_list(consts.get("strides"), 2, 1)
    pads = spatial_pads(
        x_shape[2:],
        kernel,
        strides,
        [1, 1],
        str(consts.get("pad_type", "valid")),
        consts.get("pad"),
    )
    (top, bottom), (left, right) = pads
    height, width = x_shape[2] + top + bottom, x_shape[3] + left + right
    out_h = (height - kernel[0]) // strides[0] + 1
    out_w = (width - kernel[1]) // strides[1] + 1
    every = slice(None)
    row_taps = [
        (every, every, slice(i, i + (out_h - 1) * strides[0] + 1, strides[0]))
        for i in range(kernel[0])
    ]
    column_taps = [
        (every, every, every, slice(j, j + (out_w - 1) * strides[1] + 1, strides[1]))
        for j in range(kernel[1])
    ]
    interior = (every, every, slice(top, top + x_shape[2]), slice(left, left + x_shape[3]))
    padded_shape = (*x_shape[:2], height, width)
    scratch = _Scratch()

    def run(x: np.ndarray) -> np.ndarray:
        if any((top, bottom, left, right)):
            if scratch.padded is None or scratch.padded.dtype != x.dtype:
                scratch.padded = np.full(padded_shape, -np.inf, x.dtype)
            padded = scratch.padded
            padded[interior] = x
        else:
            padded = x
        rows = _fold_max(padded, row_taps)
        return _fold_max(rows, column_taps)

    return run


def _fold_max(x: np.ndarray, taps: Sequence[tuple[slice, ...]]) -> np.ndarray:
    if len(taps) == 1:
        return np.array(x[taps[0]], copy=True)
    result = np.maximum(x[taps[0]], x[taps[1]])
    for tap in taps[2:]:
        np.maximum(result, x[tap], out=result)
    return result


PLANNERS: dict[str, Planner] = {
    "conv": plan_conv,
    "max_pool": plan_max_pool,
}
