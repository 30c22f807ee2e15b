"""Convolution, pooling, normalization, linear algebra and attention (MIL ``conv``,
``conv_transpose``, ``*_pool``, ``*_norm``, ``linear``, ``matmul``, ``einsum``,
``scaled_dot_product_attention``). Semantics follow coremltools' op definitions (iOS15-iOS18).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edgepack.emulators.coreml.ops._util import (
    axis_list,
    int_list,
    pad_spatial,
    spatial_pads,
    window_reduce,
    window_slices,
)


def conv(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    strides: Any = None,
    pad_type: str = "valid",
    pad: Any = None,
    dilations: Any = None,
    groups: int = 1,
) -> np.ndarray:
    """N-d grouped convolution: a BLAS matmul over gathered windows (im2col), with direct
    paths for pointwise (1x1) and depthwise convolutions. Loops run over kernel offsets only,
    never over pixels or channels."""
    spatial = x.ndim - 2
    kernel = list(weight.shape[2:])
    strides_ = int_list(strides, spatial, 1)
    dilations_ = int_list(dilations, spatial, 1)
    pads = spatial_pads(x.shape[2:], kernel, strides_, dilations_, str(pad_type), pad)
    groups = int(groups)
    n, c = x.shape[:2]
    out_channels = weight.shape[0]
    if all(k == 1 for k in kernel) and not any(sum(p) for p in pads) and groups == 1:
        sampled = x[(slice(None), slice(None), *(slice(None, None, s) for s in strides_))]
        flat = sampled.reshape(n, c, -1)
        result = np.matmul(weight.reshape(out_channels, c), flat)
        result = result.reshape(n, out_channels, *sampled.shape[2:])
    else:
        padded = pad_spatial(x, pads)
        if groups == c and out_channels == c and weight.shape[1] == 1:
            result = _depthwise(padded, weight, kernel, strides_, dilations_)
        else:
            result = _im2col_conv(padded, weight, kernel, strides_, dilations_, groups)
    if bias is not None:
        result = result + np.asarray(bias).reshape(1, -1, *([1] * spatial))
    return result


def _depthwise(
    padded: np.ndarray,
    weight: np.ndarray,
    kernel: list[int],
    strides: list[int],
    dilations: list[int],
) -> np.ndarray:
    """Per-channel filters: a batched (C, 1, K) @ (C, K, P) matmul over gathered taps."""
    n, c = padded.shape[:2]
    taps = weight.reshape(c, 1, -1)  # (C, 1, K), row-major like window_slices
    parts = list(window_slices(padded, kernel, strides, dilations))
    out_sizes = parts[0].shape[2:]
    cols = np.stack(parts, axis=2).reshape(n, c, len(parts), -1)  # (N, C, K, P)
    result = np.matmul(taps[None], cols)  # (N, C, 1, P)
    return result.reshape(n, c, *out_sizes)


def _im2col_conv(
    padded: np.ndarray,
    weight: np.ndarray,
    kernel: list[int],
    strides: list[int],
    dilations: list[int],
    groups: int,
) -> np.ndarray:
    n, c = padded.shape[:2]
    out_channels = weight.shape[0]
    parts = list(window_slices(padded, kernel, strides, dilations))
    out_sizes = parts[0].shape[2:]
    # (N, C, K, *out) -> (N, G, C/G * K, P), matching weight (O, C/G, *k) -> (G, O/G, C/G * K)
    cols = np.stack(parts, axis=2).reshape(n, groups, (c // groups) * len(parts), -1)
    w = weight.reshape(groups, out_channels // groups, -1)
    result = np.matmul(w[None], cols)  # (N, G, O/G, P)
    return result.reshape(n, out_channels, *out_sizes)


def conv_transpose(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    pad: Any = None,
    output_shape: Any = None,
    pad_type: str = "valid",
    strides: Any = None,
    dilations: Any = None,
    groups: int = 1,
) -> np.ndarray:
    """Transposed convolution: zero-stuff the input by the stride, then a flipped convolution.

    ``weight`` is (C_in, C_out / groups, *k) as in MIL.
    """
    spatial = x.ndim - 2
    kernel = list(weight.shape[2:])
    strides_ = int_list(strides, spatial, 1)
    dilations_ = int_list(dilations, spatial, 1)
    groups = int(groups)
    n, c_in = x.shape[:2]
    stuffed_shape = [(size - 1) * s + 1 for size, s in zip(x.shape[2:], strides_, strict=True)]
    stuffed = np.zeros((n, c_in, *stuffed_shape), dtype=x.dtype)
    stuffed[(slice(None), slice(None), *(slice(None, None, s) for s in strides_))] = x
    effective = [(k - 1) * d + 1 for k, d in zip(kernel, dilations_, strict=True)]
    full = [(e - 1, e - 1) for e in effective]
    # weight (C_in, C_out/g, *k) -> conv weight (C_out, C_in/g, *k), flipped spatially
    w = weight.reshape(groups, c_in // groups, weight.shape[1], *kernel)
    w = np.swapaxes(w, 1, 2).reshape(groups * weight.shape[1], c_in // groups, *kernel)
    w = np.flip(w, axis=tuple(range(2, 2 + spatial)))
    result = conv(
        np.pad(stuffed, [(0, 0), (0, 0), *full]),
        w,
        None,
        [1] * spatial,
        "valid",
        None,
        dilations_,
        groups,
    )
    full_sizes = list(result.shape[2:])
    crops = _transpose_crops(
        full_sizes, x.shape[2:], effective, strides_, str(pad_type), pad, output_shape
    )
    index = tuple(
        slice(b, size - max(e, 0)) for (b, e), size in zip(crops, full_sizes, strict=True)
    )
    result = result[(slice(None), slice(None), *index)]
    result = np.pad(result, [(0, 0), (0, 0), *((0, max(-e, 0)) for _, e in crops)])
    if bias is not None:
        result = result + np.asarray(bias).reshape(1, -1, *([1] * spatial))
    return result


def _transpose_crops(
    full: list[int],
    in_sizes: Any,
    effective: list[int],
    strides: list[int],
    pad_type: str,
    pad: Any,
    output_shape: Any,
) -> list[tuple[int, int]]:
    """(begin, end) to crop from the full transposed convolution; a negative end pads zeros
    (an ``output_shape`` larger than the full result, as TensorFlow's conv2d_transpose).

    ``same``/``same_lower`` crop what a ``same`` convolution of the output would pad:
    ``total = (in - 1) * stride + k_eff - out`` with ``out = output_shape`` or ``in * stride``.
    """
    spatial = len(full)
    if output_shape is not None and len(np.atleast_1d(output_shape)) >= spatial:
        wanted = [int(v) for v in np.atleast_1d(output_shape)[-spatial:]]
    else:
        wanted = None
    crops = []
    for i in range(spatial):
        if pad_type == "custom":
            values = int_list(pad, 2 * spatial, 0)
            begin, end = values[2 * i], values[2 * i + 1]
        elif pad_type in ("same", "same_lower"):
            out = wanted[i] if wanted is not None else int(in_sizes[i]) * strides[i]
            total = max((int(in_sizes[i]) - 1) * strides[i] + effective[i] - out, 0)
            begin = total // 2 if pad_type == "same" else total - total // 2
            end = full[i] - begin - out
        else:
            begin, end = 0, 0
        if wanted is not None:
            end = full[i] - begin - wanted[i]
        crops.append((begin, end))
    return crops


def _padded_for_pool(
    x: np.ndarray,
    kernel_sizes: Any,
    strides: Any,
    pad_type: str,
    pad: Any,
    ceil_mode: bool,
    fill: float,
) -> tuple[np.ndarray, list[int], list[int], list[tuple[int, int]]]:
    """``x`` padded for pooling with ``fill`` (``ceil_mode`` included), the kernel, the strides
    and the padding used."""
    spatial = x.ndim - 2
    kernel = int_list(kernel_sizes, spatial, 1)
    strides_ = int_list(strides, spatial, 1)
    pads = spatial_pads(
        x.shape[2:], kernel, strides_, [1] * spatial, str(pad_type), pad, bool(ceil_mode)
    )
    return pad_spatial(x, pads, fill), kernel, strides_, pads


def max_pool(
    x: np.ndarray,
    kernel_sizes: Any,
    strides: Any = None,
    pad_type: str = "valid",
    pad: Any = None,
    ceil_mode: bool = False,
) -> np.ndarray:
    padded, kernel, strides_, _ = _padded_for_pool(
        x, kernel_sizes, strides, pad_type, pad, ceil_mode, -np.inf
    )
    return window_reduce(padded, kernel, strides_, np.maximum)


def avg_pool(
    x: np.ndarray,
    kernel_sizes: Any,
    strides: Any = None,
    pad_type: str = "valid",
    pad: Any = None,
    exclude_padding_from_average: bool = False,
    ceil_mode: bool = False,
) -> np.ndarray:
    """The divisor counts the input and, unless excluded, the explicit padding; never the
    overhang that ``ceil_mode`` adds past the end padding (PyTorch's ``ceil_mode``)."""
    padded, kernel, strides_, pads = _padded_for_pool(
        x, kernel_sizes, strides, pad_type, pad, ceil_mode, 0.0
    )
    spatial = x.ndim - 2
    explicit = spatial_pads(x.shape[2:], kernel, strides_, [1] * spatial, str(pad_type), pad)
    counted = pad_spatial(
        np.ones((1, 1, *x.shape[2:]), dtype=np.float32),
        explicit,
        0.0 if exclude_padding_from_average else 1.0,
    )
    overhang = [(0, full[1] - part[1]) for full, part in zip(pads, explicit, strict=True)]
    count = window_reduce(pad_spatial(counted, overhang), kernel, strides_, np.add)
    return window_reduce(padded, kernel, strides_, np.add) / count


def l2_pool(
    x: np.ndarray,
    kernel_sizes: Any,
    strides: Any = None,
    pad_type: str = "valid",
    pad: Any = None,
    ceil_mode: bool = False,
) -> np.ndarray:
    padded, kernel, strides_, _ = _padded_for_pool(
        x, kernel_sizes, strides, pad_type, pad, ceil_mode, 0.0
    )
    return np.sqrt(window_reduce(np.square(padded), kernel, strides_, np.add))


def _channel(value: np.ndarray | None, rank: int) -> np.ndarray | None:
    return None if value is None else np.asarray(value).reshape(1, -1, *([1] * (rank - 2)))


def batch_norm(
    x: np.ndarray,
    mean: np.ndarray,
    variance: np.ndarray,
    gamma: np.ndarray | None = None,
    beta: np.ndarray | None = None,
    epsilon: float = 1e-5,
) -> np.ndarray:
    rank = x.ndim
    centred = x - np.asarray(mean).reshape(1, -1, *([1] * (rank - 2)))
    result = centred / np.sqrt(
        np.asarray(variance).reshape(centred.shape[1:2] + (1,) * (rank - 2)) + np.float32(epsilon)
    )
    if gamma is not None:
        result = result * _channel(gamma, rank)
    if beta is not None:
        result = result + _channel(beta, rank)
    return result


def instance_norm(
    x: np.ndarray,
    gamma: np.ndarray | None = None,
    beta: np.ndarray | None = None,
    epsilon: float = 1e-5,
) -> np.ndarray:
    axes = tuple(range(2, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    variance = np.square(x - mean).mean(axis=axes, keepdims=True)
    result = (x - mean) / np.sqrt(variance + np.float32(epsilon))
    if gamma is not None:
        result = result * _channel(gamma, x.ndim)
    if beta is not None:
        result = result + _channel(beta, x.ndim)
    return result


def layer_norm(
    x: np.ndarray,
    axes: Any = None,
    gamma: np.ndarray | None = None,
    beta: np.ndarray | None = None,
    epsilon: float = 1e-5,
) -> np.ndarray:
    normalised_axes = axis_list(axes, x.ndim) or tuple(range(x.ndim))
    mean = x.mean(axis=normalised_axes, keepdims=True)
    variance = np.square(x - mean).mean(axis=normalised_axes, keepdims=True)
    result = (x - mean) / np.sqrt(variance + np.float32(epsilon))
    # gamma/beta have the shape x.shape[axes]: laid along the normalised axes
    broadcast = [x.shape[i] if i in normalised_axes else 1 for i in range(x.ndim)]
    if gamma is not None:
        result = result * np.asarray(gamma).reshape(broadcast)
    if beta is not None:
        result = result + np.asarray(beta).reshape(broadcast)
    return result


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    result = np.matmul(x, np.asarray(weight).T)
    return result if bias is None else result + np.asarray(bias)


def matmul(
    x: np.ndarray, y: np.ndarray, transpose_x: bool = False, transpose_y: bool = False
) -> np.ndarray:
    a = np.swapaxes(x, -1, -2) if transpose_x and x.ndim > 1 else x
    b = np.swapaxes(y, -1, -2) if transpose_y and y.ndim > 1 else y
    return np.matmul(a, b)


def einsum(values: tuple[np.ndarray, ...], equation: str) -> np.ndarray:
    return np.einsum(str(equation), *values, optimize=True)


def scaled_dot_product_attention(
    query: np.ndarray, key: np.ndarray, value: np.ndarray, attn_mask: np.ndarray | None = None
) -> np.ndarray:
    """softmax(Q K^T / sqrt(d) + mask) V; a boolean mask keeps True positions (iOS18)."""
    scores = np.matmul(query, np.swapaxes(key, -1, -2)) / np.sqrt(np.float32(query.shape[-1]))
    if attn_mask is not None:
        mask = np.asarray(attn_mask)
        scores = np.where(mask, scores, -np.inf) if mask.dtype == bool else scores + mask
    scores = scores - scores.max(axis=-1, keepdims=True)
    weights = np.exp(scores)
    weights = weights / weights.sum(axis=-1, keepdims=True)
    return np.matmul(weights, value)


def l2_norm(x: np.ndarray, epsilon: float = 1e-6) -> np.ndarray:
    """``x / sqrt(sum(x ** 2) + epsilon)`` over the last three axes; leading axes are batch."""
    square_sum = np.sum(np.square(x), axis=(-3, -2, -1), keepdims=True)
    return x / np.sqrt(square_sum + np.float32(epsilon))


def local_response_norm(
    x: np.ndarray, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0
) -> np.ndarray:
    """``x / (k + alpha / size * sum of x ** 2 over a window of channels) ** beta``; channel
    ``c``'s window is ``[c - size // 2, c + (size - 1) // 2]``, clipped to the channels (the
    window PyTorch's LocalResponseNorm and coremltools' tests use)."""
    size = int(size)
    squares = np.square(x)
    padded = np.pad(squares, [(0, 0), (size // 2, (size - 1) // 2)] + [(0, 0)] * (x.ndim - 2))
    cumulative = np.cumsum(padded, axis=1, dtype=np.float64)
    cumulative = np.concatenate([np.zeros_like(cumulative[:, :1]), cumulative], axis=1)
    window = (cumulative[:, size:] - cumulative[:, :-size]).astype(x.dtype)
    scale = np.float32(k) + np.float32(alpha) / np.float32(size) * window
    return x / np.power(scale, np.float32(beta))


KERNELS: dict[str, Callable[..., Any]] = {
    "conv": conv,
    "l2_norm": l2_norm,
    "local_response_norm": local_response_norm,
    "conv_transpose": conv_transpose,
    "max_pool": max_pool,
    "avg_pool": avg_pool,
    "l2_pool": l2_pool,
    "batch_norm": batch_norm,
    "instance_norm": instance_norm,
    "layer_norm": layer_norm,
    "linear": linear,
    "matmul": matmul,
    "einsum": einsum,
    "scaled_dot_product_attention": scaled_dot_product_attention,
}
