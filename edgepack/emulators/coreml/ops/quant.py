"""Weight decompression (``constexpr_*``) and activation ``quantize`` / ``dequantize``.

The formulas are those of coremltools' op definitions:

- ``constexpr_affine_dequantize`` (iOS16): ``(quantized_data - zero_point) * scale`` with
  ``scale``/``zero_point`` scalars or vectors along ``axis``;
- ``constexpr_blockwise_shift_scale`` (iOS18): ``(data - offset) * scale``, where ``scale``
  and ``offset`` have the rank of ``data`` and are repeated over blocks of
  ``data.shape // scale.shape``;
- ``constexpr_lut_to_dense``: iOS16 reads ``indices`` as bits packed little-endian (``log2(lut
  size)`` bits each) into a flat ``lut``; iOS18 takes unpacked indices and a per-block ``lut``
  of shape ``blocks + [2**nbits, vector_size]``, vectors laid along ``vector_axis``;
- ``constexpr_sparse_to_dense``: iOS16 ``mask`` is bits packed little-endian, iOS18 ``mask`` is a
  0/1 tensor of the dense shape; ``nonzero_data`` fills the set positions in row-major order;
- ``constexpr_lut_to_sparse`` and ``constexpr_sparse_blockwise_shift_scale`` (iOS18, joint
  compression): the palettization or shift-scale of ``constexpr_lut_to_dense`` /
  ``constexpr_blockwise_shift_scale`` applied to the nonzero entries of a sparse tensor, as laid
  out densely (blocks and vectors located by dense position); outputs (mask, nonzero values),
  the mask expanded along ``vector_axis`` for vector palettization;
- ``constexpr_cast`` (iOS17): a cast of a constant;
- ``quantize`` (iOS17): ``clip(round(input / scale) + zero_point)`` to the output dtype, with
  ``round`` to nearest even (NumPy's rounding); ``dequantize``: ``(input - zero_point) * scale``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edgepack.emulators.coreml.ops._util import broadcast_param

_DTYPES = {
    "int8": np.int8,
    "uint8": np.uint8,
    "int16": np.int16,
    "uint16": np.uint16,
    "int32": np.int32,
    "fp16": np.float16,
    "fp32": np.float32,
}


def unpack_bits(packed: np.ndarray, nbits: int, count: int) -> np.ndarray:
    """Little-endian ``nbits``-bit elements packed into bytes (coremltools' layout)."""
    flat = np.unpackbits(np.asarray(packed, dtype=np.uint8).ravel(), bitorder="little")
    bits = flat[: count * nbits].reshape(count, nbits).astype(np.int64)
    return (bits << np.arange(nbits)).sum(axis=1)


def affine_dequantize(
    quantized_data: np.ndarray, zero_point: np.ndarray, scale: np.ndarray, axis: int = 0
) -> np.ndarray:
    rank = quantized_data.ndim
    zp = broadcast_param(np.asarray(zero_point), rank, int(axis)).astype(np.float32)
    sc = broadcast_param(np.asarray(scale), rank, int(axis))
    return ((quantized_data.astype(np.float32) - zp) * sc).astype(np.asarray(scale).dtype)


def _repeat_blocks(param: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    for axis, (full, small) in enumerate(zip(shape, param.shape, strict=True)):
        if full != small:
            param = np.repeat(param, full // small, axis=axis)
    return param


def blockwise_shift_scale(
    data: np.ndarray, scale: np.ndarray, offset: np.ndarray | None = None
) -> np.ndarray:
    values = data.astype(scale.dtype)
    if offset is not None:
        values = values - _repeat_blocks(np.asarray(offset).astype(scale.dtype), data.shape)
    return _repeat_blocks(scale, data.shape) * values


def lut_to_dense_ios16(lut: np.ndarray, indices: np.ndarray, shape: Any) -> np.ndarray:
    dense_shape = [int(v) for v in np.atleast_1d(shape)]
    nbits = int(np.log2(lut.size))
    flat = unpack_bits(indices, nbits, int(np.prod(dense_shape)))
    return np.asarray(lut).ravel()[flat].reshape(dense_shape)


def lut_to_dense_ios18(
    indices: np.ndarray, lut: np.ndarray, vector_axis: int | None = None
) -> np.ndarray:
    rank = indices.ndim
    idx = np.asarray(indices).astype(np.int64)
    table = _repeat_blocks(np.asarray(lut), (*idx.shape, *lut.shape[rank:]))
    picked = np.take_along_axis(table, idx[..., None, None], axis=rank)[..., 0, :]
    vector_size = lut.shape[-1]
    if vector_size == 1:
        return picked[..., 0]
    axis = int(vector_axis or 0) % rank
    moved = np.moveaxis(picked, -1, axis + 1)
    shape = list(idx.shape)
    shape[axis] *= vector_size
    return moved.reshape(shape)


def sparse_to_dense_ios16(nonzero_data: np.ndarray, mask: np.ndarray, shape: Any) -> np.ndarray:
    dense_shape = [int(v) for v in np.atleast_1d(shape)]
    count = int(np.prod(dense_shape))
    flags = np.unpackbits(np.asarray(mask, dtype=np.uint8).ravel(), bitorder="little")[:count]
    dense = np.zeros(count, dtype=nonzero_data.dtype)
    dense[flags != 0] = nonzero_data
    return dense.reshape(dense_shape)


def sparse_to_dense_ios18(nonzero_data: np.ndarray, mask: np.ndarray) -> np.ndarray:
    dense = np.zeros(np.asarray(mask).shape, dtype=nonzero_data.dtype)
    dense[np.asarray(mask) != 0] = nonzero_data
    return dense


def _scatter(mask: np.ndarray, values: np.ndarray) -> np.ndarray:
    dense = np.zeros(mask.shape, dtype=values.dtype)
    dense[mask != 0] = values
    return dense


def lut_to_sparse(
    indices_mask: np.ndarray,
    indices_nonzero_data: np.ndarray,
    lut: np.ndarray,
    vector_axis: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    mask = np.asarray(indices_mask)
    dense = lut_to_dense_ios18(_scatter(mask, np.asarray(indices_nonzero_data)), lut, vector_axis)
    vector_size = np.asarray(lut).shape[-1]
    if vector_size > 1:
        mask = np.repeat(mask, vector_size, axis=int(vector_axis or 0) % mask.ndim)
    return mask, dense[mask != 0]


def sparse_blockwise_shift_scale(
    data_mask: np.ndarray,
    nonzero_data: np.ndarray,
    scale: np.ndarray,
    offset: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    mask = np.asarray(data_mask)
    dense = blockwise_shift_scale(_scatter(mask, np.asarray(nonzero_data)), scale, offset)
    return mask, dense[mask != 0]


def quantize(
    input: np.ndarray,
    scale: np.ndarray,
    zero_point: np.ndarray | None = None,
    axis: int | None = None,
    output_dtype: str = "int8",
) -> np.ndarray:
    dtype: Any = _DTYPES[str(output_dtype)]
    rank = input.ndim
    sc = broadcast_param(np.asarray(scale, dtype=np.float32), rank, axis)
    zp = 0 if zero_point is None else broadcast_param(np.asarray(zero_point), rank, axis)
    limits = np.iinfo(dtype)
    q = np.round(input.astype(np.float32) / sc) + np.asarray(zp, dtype=np.float32)
    return np.clip(q, limits.min, limits.max).astype(dtype)


def dequantize(
    input: np.ndarray,
    scale: np.ndarray,
    zero_point: np.ndarray | None = None,
    axis: int | None = None,
) -> np.ndarray:
    rank = input.ndim
    sc = broadcast_param(np.asarray(scale), rank, axis)
    zp = 0 if zero_point is None else broadcast_param(np.asarray(zero_point), rank, axis)
    return ((input.astype(np.float32) - np.asarray(zp, np.float32)) * sc).astype(sc.dtype)


# Kernels whose meaning changed between opsets are keyed (op_type, first opset) -> kernel;
# the interpreter picks the newest entry not newer than the program's opset.
VERSIONED: dict[tuple[str, int], Callable[..., Any]] = {
    ("constexpr_lut_to_dense", 16): lut_to_dense_ios16,
    ("constexpr_lut_to_dense", 18): lut_to_dense_ios18,
    ("constexpr_sparse_to_dense", 16): sparse_to_dense_ios16,
    ("constexpr_sparse_to_dense", 18): sparse_to_dense_ios18,
}

KERNELS: dict[str, Callable[..., Any]] = {
    "constexpr_affine_dequantize": affine_dequantize,
    "constexpr_blockwise_shift_scale": blockwise_shift_scale,
    "constexpr_lut_to_sparse": lut_to_sparse,
    "constexpr_sparse_blockwise_shift_scale": sparse_blockwise_shift_scale,
    "constexpr_cast": lambda source_val, output_dtype: np.asarray(source_val).astype(
        _DTYPES[str(output_dtype)]
    ),
    "quantize": quantize,
    "dequantize": dequantize,
}
