"""Resizing (MIL ``upsample_*``, ``resize_*``, ``resize``) on the last two axes (NCHW)."""

from __future__ import annotations

import functools
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


def _box_coords(start: float, end: float, out_size: int, mode: str) -> np.ndarray:
    """Where each of ``out_size`` samples of a box edge ``[start, end]`` (pixel coordinates,
    either order) falls: the box analogue of :func:`_source_coords`."""
    i = np.arange(out_size, dtype=np.float64)
    extent = end - start
    if mode in ("ALIGN_CORNERS", "STRICT_ALIGN_CORNERS"):
        if out_size == 1:
            return np.full(1, start if mode == "STRICT_ALIGN_CORNERS" else (start + end) / 2)
        return start + i * extent / (out_size - 1)
    step = extent / out_size
    if mode == "DEFAULT":
        return start + i * step
    if mode == "OFFSET_CORNERS":
        return start + step / 2 + i * step
    return start + (i + 0.5) * step - 0.5  # UNALIGN_CORNERS


def _sample_bilinear(
    image: np.ndarray, rows: np.ndarray, cols: np.ndarray, pad: float | None
) -> np.ndarray:
    """``image [C, H, W]`` sampled at ``rows x cols``; outside the image: clamped to its edge
    (``pad`` None) or ``pad``."""
    height, width = image.shape[-2:]
    out = _bilinear_axis(_bilinear_axis(image, 1, rows), 2, cols)
    if pad is not None:
        outside_rows = (rows < 0) | (rows > height - 1)
        outside_cols = (cols < 0) | (cols > width - 1)
        out = np.where(outside_rows[:, None] | outside_cols[None, :], np.float32(pad), out)
    return out


_CORNER_ORDER = {  # where (h_start, w_start, h_end, w_end) sit in each convention
    "CORNERS_HEIGHT_FIRST": (0, 1, 2, 3),
    "CORNERS_WIDTH_FIRST": (1, 0, 3, 2),
}
_CENTER_ORDER = {  # where (h_center, w_center, height, width) sit
    "CENTER_SIZE_HEIGHT_FIRST": (0, 1, 2, 3),
    "CENTER_SIZE_WIDTH_FIRST": (1, 0, 3, 2),
}


def _box_edges(box: np.ndarray, mode: str) -> tuple[float, float, float, float]:
    """``(h_start, w_start, h_end, w_end)`` of one box in ``box_coordinate_mode``."""
    values = [float(v) for v in box]
    if mode in _CORNER_ORDER:
        h0, w0, h1, w1 = (values[i] for i in _CORNER_ORDER[mode])
        return h0, w0, h1, w1
    hc, wc, h, w = (values[i] for i in _CENTER_ORDER[mode])
    return hc - h / 2, wc - w / 2, hc + h / 2, wc + w / 2


def _crop_resize_boxes(
    x: np.ndarray,
    boxes: np.ndarray,
    images: list[list[int]],
    target_height: int,
    target_width: int,
    normalized_coordinates: bool,
    spatial_scale: float,
    box_coordinate_mode: str,
    sampling_mode: str,
    pad_value: float | None,
) -> np.ndarray:
    """``[N, len(images[i]), C, th, tw]``: box ``i`` cut from each image of ``images[i]``."""
    height, width = x.shape[-2:]
    crops = []
    for box, chosen in zip(boxes, images, strict=True):
        h0, w0, h1, w1 = _box_edges(box, str(box_coordinate_mode))
        scale_h = (height - 1) if normalized_coordinates else 1.0
        scale_w = (width - 1) if normalized_coordinates else 1.0
        rows = _box_coords(
            h0 * scale_h * spatial_scale, h1 * scale_h * spatial_scale, int(target_height),
            str(sampling_mode),
        )  # fmt: skip
        cols = _box_coords(
            w0 * scale_w * spatial_scale, w1 * scale_w * spatial_scale, int(target_width),
            str(sampling_mode),
        )  # fmt: skip
        crops.append(np.stack([_sample_bilinear(x[b], rows, cols, pad_value) for b in chosen]))
    return np.stack(crops).astype(x.dtype)


def crop_resize(
    x: np.ndarray,
    roi: np.ndarray,
    target_height: int = 1,
    target_width: int = 1,
    normalized_coordinates: bool = False,
    spatial_scale: float = 1.0,
    box_coordinate_mode: str = "CORNERS_HEIGHT_FIRST",
    sampling_mode: str = "DEFAULT",
    pad_value: float | None = None,
) -> np.ndarray:
    """iOS15/16: ``roi [N, 1, 4 or 5, 1, 1]`` (with 5, the first value picks the image) ->
    ``[N, B or 1, C, th, tw]``. iOS15 clamps samples to the image; iOS16 pads with
    ``pad_value``."""
    boxes = np.asarray(roi, dtype=np.float64).reshape(len(roi), -1)
    if boxes.shape[1] == 5:
        images = [[int(b)] for b in boxes[:, 0]]
        boxes = boxes[:, 1:]
    else:
        images = [list(range(x.shape[0]))] * len(boxes)
    return _crop_resize_boxes(
        x, boxes, images, target_height, target_width, normalized_coordinates,
        spatial_scale, box_coordinate_mode, sampling_mode, pad_value,
    )  # fmt: skip


def crop_resize_ios17(
    x: np.ndarray,
    boxes: np.ndarray,
    box_indices: np.ndarray | None = None,
    target_height: int = 1,
    target_width: int = 1,
    normalized_coordinates: bool = False,
    spatial_scale: float = 1.0,
    box_coordinate_mode: str = "CORNERS_HEIGHT_FIRST",
    sampling_mode: str = "DEFAULT",
    pad_value: float = 0.0,
) -> np.ndarray:
    """``boxes [N, 4]`` and ``box_indices [N]`` (default ``arange(N)``) -> ``[N, C, th, tw]``."""
    boxes = np.asarray(boxes, dtype=np.float64)
    indices = np.arange(len(boxes)) if box_indices is None else np.ravel(box_indices)
    cut = _crop_resize_boxes(
        x, boxes, [[int(i)] for i in indices], target_height, target_width,
        normalized_coordinates, spatial_scale, box_coordinate_mode, sampling_mode, pad_value,
    )  # fmt: skip
    return cut[:, 0]


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
    "crop_resize": crop_resize,
    "resize_bilinear": resize_bilinear,
    "upsample_bilinear": upsample_bilinear,
    "upsample_nearest_neighbor": upsample_nearest_neighbor,
    "resize_nearest_neighbor": resize_nearest_neighbor,
    "resize": resize,
}
VERSIONED: dict[tuple[str, int], Callable[..., Any]] = {
    # iOS16 adds pad_value (default 0) for samples outside the image; iOS15 clamps to its edge
    ("crop_resize", 16): functools.partial(crop_resize, pad_value=0.0),
    ("crop_resize", 17): crop_resize_ios17,
}
