"""Resizing (MIL ``upsample_*``, ``resize_*``, ``resize``) on the last two axes (NCHW)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def _source_coords(out_size: int, in_size: int, mode: str) -> np.ndarray:
    """Where each output pixel samples the input, for MIL's sampling modes."""
    i = np.arange(out_size, dtype=np.float64)
    if mode in ("ALIGN_CORNERS", "STRICT_ALIGN_CORNERS"):
        if out_size == 1:
            return np.zeros(1) if mode == "STRICT_ALIGN_CORNERS" else np.full(1, (in_size - 1) / 2)
        return i * (in_size - 1) / (out_size - 1)
    ratio = in_size / out_size
    if mode == "DEFAULT":
        return i * ratio
    if mode == "OFFSET_CORNERS":
        delta = max(1, in_size - 1) / out_size
        return delta / 2 + i * delta
    # UNALIGN_CORNERS (half-pixel centres)
    return (i + 0.5) * ratio - 0.5


def _bilinear_axis(x: np.ndarray, axis: int, coords: np.ndarray) -> np.ndarray:
    size = x.shape[axis]
    coords = np.clip(coords, 0, size - 1)
    low = np.floor(coords).astype(np.int64)
    high = np.minimum(low + 1, size - 1)
    weight = (coords - low).astype(np.float32)
    shape = [1] * x.ndim
    shape[axis] = -1
    a = np.take(x, low, axis=axis)
    b = np.take(x, high, axis=axis)
    return a + (b - a) * weight.reshape(shape)


def resize_bilinear(
    x: np.ndarray,
    target_size_height: int = 1,
    target_size_width: int = 1,
    sampling_mode: str = "DEFAULT",
) -> np.ndarray:
    mode = str(sampling_mode)
    rows = _source_coords(int(target_size_height), x.shape[-2], mode)
    cols = _source_coords(int(target_size_width), x.shape[-1], mode)
    return _bilinear_axis(_bilinear_axis(x, x.ndim - 2, rows), x.ndim - 1, cols)


def upsample_bilinear(
    x: np.ndarray,
    scale_factor_height: float = 1.0,
    scale_factor_width: float = 1.0,
    align_corners: bool = True,
    half_pixel_centers: bool | None = None,
) -> np.ndarray:
    """The output is ``floor(in * scale)``; the grid spacing is recomputed from the sizes
    (PyTorch's ``recompute_scale_factor=True``, as MIL defines), not taken from the scale."""
    out_h = int(np.floor(x.shape[-2] * float(scale_factor_height)))
    out_w = int(np.floor(x.shape[-1] * float(scale_factor_width)))
    if align_corners:
        mode = "ALIGN_CORNERS"
    else:
        half = True if half_pixel_centers is None else bool(half_pixel_centers)
        mode = "UNALIGN_CORNERS" if half else "DEFAULT"
    rows = _source_coords(out_h, x.shape[-2], mode)
    cols = _source_coords(out_w, x.shape[-1], mode)
    return _bilinear_axis(_bilinear_axis(x, x.ndim - 2, rows), x.ndim - 1, cols)


def _nearest_index(out_size: int, in_size: int, half_pixel: bool) -> np.ndarray:
    """Source pixel of each output pixel: ``floor(i * in / out)`` (TensorFlow's nearest), or
    ``floor((i + 0.5) * in / out)`` with half-pixel centres; exact integer arithmetic."""
    i = np.arange(out_size, dtype=np.int64)
    index = ((2 * i + 1) * in_size) // (2 * out_size) if half_pixel else (i * in_size) // out_size
    return np.minimum(index, in_size - 1)


def upsample_nearest_neighbor(
    x: np.ndarray, scale_factor_height: float = 1, scale_factor_width: float = 1
) -> np.ndarray:
    """The output is ``floor(in * scale)``; pixels are picked from the size ratio (how
    coremltools' TF frontend maps ResizeNearestNeighbor to fractional scales)."""
    out_h = int(np.floor(x.shape[-2] * float(scale_factor_height)))
    out_w = int(np.floor(x.shape[-1] * float(scale_factor_width)))
    rows = _nearest_index(out_h, x.shape[-2], half_pixel=False)
    cols = _nearest_index(out_w, x.shape[-1], half_pixel=False)
    return np.take(np.take(x, rows, axis=-2), cols, axis=-1)


def resize_nearest_neighbor(
    x: np.ndarray, target_size_height: int, target_size_width: int
) -> np.ndarray:
    """Half-pixel centres (TensorFlow's ResizeNearestNeighbor(half_pixel_centers=True), which
    coremltools' TF frontend converts to this op)."""
    rows = _nearest_index(int(target_size_height), x.shape[-2], half_pixel=True)
    cols = _nearest_index(int(target_size_width), x.shape[-1], half_pixel=True)
    return np.take(np.take(x, rows, axis=-2), cols, axis=-1)


def resize(
    x: np.ndarray,
    shape: Any,
    resized_dims: int,
    interpolation_mode: str = "LINEAR",
    sampling_mode: str = "DEFAULT",
) -> np.ndarray:
    """iOS17 ``resize`` of the last ``resized_dims`` axes to ``shape``'s tail (a 0 keeps the
    input's size); nearest neighbour uses half-pixel centres like ``resize_nearest_neighbor``."""
    dims = int(resized_dims)
    target = [int(v) for v in np.atleast_1d(shape)][len(np.atleast_1d(shape)) - dims :]
    result = x
    for offset, wanted in enumerate(target):
        axis = x.ndim - dims + offset
        size = wanted or x.shape[axis]
        if str(interpolation_mode) == "NEAREST_NEIGHBOR":
            index = _nearest_index(size, x.shape[axis], half_pixel=True)
            result = np.take(result, index, axis=axis)
        else:
            coords = _source_coords(size, x.shape[axis], str(sampling_mode))
            result = _bilinear_axis(result, axis, coords)
    return result


KERNELS: dict[str, Callable[..., Any]] = {
    "resize_bilinear": resize_bilinear,
    "upsample_bilinear": upsample_bilinear,
    "upsample_nearest_neighbor": upsample_nearest_neighbor,
    "resize_nearest_neighbor": resize_nearest_neighbor,
    "resize": resize,
}
