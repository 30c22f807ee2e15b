"""Sampling an image at arbitrary points: ``resample`` (iOS15; iOS16 adds fp16 coordinates) and
``affine`` (iOS15), on ``x [B, C, H, W]``.

Semantics from coremltools' op definitions and the values its op tests expect
(``ops/tests/iOS15/test_image_resizing.py``):

- coordinates are ``(x, y)`` pairs, in pixels (``unnormalized``), or normalized to ``[-1, 1]`` or
  ``[0, 1]``; with ``align_corners`` the extremes are the centres of the corner pixels, without
  it their outer edges;
- ``bilinear`` blends the four neighbouring pixels, ``nearest`` takes ``floor(p + 0.5)``;
- the image is padded as the padding mode says, pixel by pixel (a neighbour outside the image
  is a padding pixel): ``constant`` (``padding_value``), ``border`` (the edge repeated),
  ``reflection`` (mirrored about the edge pixel: ``|1 2 3| -> 3 2 |1 2 3| 2 1``) or
  ``symmetric`` (mirrored including it: ``2 1 |1 2 3| 3 2``);
- ``affine`` samples at ``(a0 x + a1 y + a2, b0 x + b1 y + b2)`` for each output pixel's
  normalized ``[-1, 1]`` position ``(x, y)``, one matrix per image or one for all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def _pixels(coords: np.ndarray, size: int, mode: str, align_corners: bool) -> np.ndarray:
    """Normalized or pixel coordinates along an axis of ``size`` pixels -> pixel coordinates."""
    if mode == "unnormalized":
        return coords
    if mode == "normalized_minus_one_to_one":
        return (coords + 1) / 2 * (size - 1) if align_corners else ((coords + 1) * size - 1) / 2
    if mode == "normalized_zero_to_one":
        return coords * (size - 1) if align_corners else coords * size - 0.5
    raise ValueError(f"unknown coordinates_mode {mode!r}")


def _padded(index: np.ndarray, size: int, padding_mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Integer pixel indices (any value) -> indices inside the image, and which of them read
    the image (False: the constant padding)."""
    inside = (index >= 0) & (index < size)
    if padding_mode == "constant":
        return np.clip(index, 0, size - 1), inside
    if padding_mode == "border":
        mapped = np.clip(index, 0, size - 1)
    elif padding_mode == "reflection":
        period = max(2 * (size - 1), 1)
        folded = np.mod(index, period)
        mapped = np.where(folded >= size, period - folded, folded)
    elif padding_mode == "symmetric":
        folded = np.mod(index, 2 * size)
        mapped = np.where(folded >= size, 2 * size - 1 - folded, folded)
    else:
        raise ValueError(f"unknown padding_mode {padding_mode!r}")
    return mapped, np.ones_like(inside)


def _read(
    image: np.ndarray, rows: np.ndarray, cols: np.ndarray, padding_mode: str, fill: float
) -> np.ndarray:
    """``image [C, H, W]`` at integer ``rows``, ``cols`` (same shape P) -> ``[C, *P]``."""
    rows, rows_inside = _padded(rows, image.shape[1], padding_mode)
    cols, cols_inside = _padded(cols, image.shape[2], padding_mode)
    values = image[:, rows, cols]
    return np.where(rows_inside & cols_inside, values, np.float32(fill))


def _sample(
    image: np.ndarray,
    px: np.ndarray,
    py: np.ndarray,
    sampling_mode: str,
    padding_mode: str,
    fill: float,
) -> np.ndarray:
    """``image [C, H, W]`` at pixel coordinates ``px``, ``py`` -> ``[C, *px.shape]``."""
    if sampling_mode == "nearest":
        cols = np.floor(px + 0.5).astype(np.int64)
        rows = np.floor(py + 0.5).astype(np.int64)
        return _read(image, rows, cols, padding_mode, fill)
    if sampling_mode != "bilinear":
        raise ValueError(f"unknown sampling_mode {sampling_mode!r}")
    x0, y0 = np.floor(px), np.floor(py)
    fx, fy = (px - x0).astype(np.float32), (py - y0).astype(np.float32)
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    top = (
        _read(image, y0, x0, padding_mode, fill) * (1 - fx)
        + _read(image, y0, x0 + 1, padding_mode, fill) * fx
    )
    bottom = (
        _read(image, y0 + 1, x0, padding_mode, fill) * (1 - fx)
        + _read(image, y0 + 1, x0 + 1, padding_mode, fill) * fx
    )
    return top * (1 - fy) + bottom * fy


def resample(
    x: np.ndarray,
    coordinates: np.ndarray,
    sampling_mode: str,
    padding_mode: str,
    padding_value: float,
    coordinates_mode: str,
    align_corners: bool,
) -> np.ndarray:
    """``x [B, C, H, W]`` sampled at ``coordinates [B, H2, W2, 2]`` -> ``[B, C, H2, W2]``."""
    points = np.asarray(coordinates, np.float64)
    height, width = x.shape[2:]
    px = _pixels(points[..., 0], width, str(coordinates_mode), bool(align_corners))
    py = _pixels(points[..., 1], height, str(coordinates_mode), bool(align_corners))
    return np.stack(
        [
            _sample(image, px[b], py[b], sampling_mode, padding_mode, float(padding_value))
            for b, image in enumerate(np.asarray(x, np.float32))
        ]
    )


def _output_positions(size: int, align_corners: bool) -> np.ndarray:
    """Normalized ``[-1, 1]`` positions of ``size`` output pixels."""
    i = np.arange(size, dtype=np.float64)
    if align_corners:
        return np.zeros(1) if size == 1 else i * 2 / (size - 1) - 1
    return (2 * i + 1) / size - 1


def affine(
    x: np.ndarray,
    transform_matrix: np.ndarray,
    output_height: int,
    output_width: int,
    sampling_mode: str,
    padding_mode: str,
    padding_value: float,
    coordinates_mode: str,
    align_corners: bool,
) -> np.ndarray:
    """``x [B, C, H, W]`` -> ``[B, C, output_height, output_width]``, each output pixel sampled
    at its affinely transformed position."""
    matrices = np.asarray(transform_matrix, np.float64).reshape(-1, 6)
    ys = _output_positions(int(output_height), bool(align_corners))
    xs = _output_positions(int(output_width), bool(align_corners))
    grid_y, grid_x = np.meshgrid(ys, xs, indexing="ij")
    coordinates = []
    for b in range(x.shape[0]):
        a0, a1, a2, b0, b1, b2 = matrices[b if len(matrices) > 1 else 0]
        coordinates.append(
            np.stack([a0 * grid_x + a1 * grid_y + a2, b0 * grid_x + b1 * grid_y + b2], axis=-1)
        )
    return resample(
        x,
        np.stack(coordinates),
        sampling_mode.lower(),
        padding_mode.lower(),
        padding_value,
        coordinates_mode.lower(),
        align_corners,
    )


KERNELS: dict[str, Callable[..., Any]] = {"resample": resample, "affine": affine}
