"""Plain image geometry: fit modes and resizing defined by their arithmetic (``antialias = false``).

Pillow's resize filters widen on a downscale (antialiasing), which no phone or browser "bilinear"
reproduces. This module is the reference for the contract's ``antialias = false`` preprocessing:
every step below is integer arithmetic or one formula in float64, so an app developer can
implement it on Android, iOS or the web and get the same pixels (within one level, see
"Rounding").

Specification
=============

Notation: the source image is ``sh`` rows by ``sw`` columns, the target (the model input) is
``th`` by ``tw``. All sizes are positive integers. ``a // b`` is integer division rounded
down (floor), ``/`` is exact division. ``rhu(p / q) = (2*p + q) // (2*q)`` is ``p / q``
rounded half up, computed exactly in integers.

Fit (which source region goes where in the output)
--------------------------------------------------
The result of a fit is a crop box ``(left, top, right, bottom)`` in source pixels (right and
bottom exclusive), the size ``(new_h, new_w)`` that box is resized to, and the offset
``(top, left)`` at which the resized box is placed in the ``th`` x ``tw`` output. Output pixels
outside the placed box hold the pad value (one value per channel).

``stretch``
    Crop the whole image ``(0, 0, sw, sh)``; resize it to ``(th, tw)``; offset ``(0, 0)``.

``center_crop``
    Keep the largest centred region with the target's aspect ratio; resize it to ``(th, tw)``;
    offset ``(0, 0)``. Compare the aspect ratios exactly in integers:

    * source wider (``sw * th > sh * tw``): ``crop_h = sh``,
      ``crop_w = max(1, rhu(sh * tw / th))``, ``left = (sw - crop_w) // 2``, ``top = 0``;
    * source taller (``sw * th < sh * tw``): ``crop_w = sw``,
      ``crop_h = max(1, rhu(sw * th / tw))``, ``top = (sh - crop_h) // 2``, ``left = 0``;
    * same aspect ratio (``sw * th == sh * tw``): the whole image.

    The crop box is ``(left, top, left + crop_w, top + crop_h)``. When the margin is odd, the
    extra column (row) is cut on the right (bottom).

``letterbox``
    Scale the whole image by ``min(th / sh, tw / sw)`` and centre it; pad the rest.

    * height limits (``th * sw <= tw * sh``): ``new_h = th``,
      ``new_w = min(tw, max(1, rhu(sw * th / sh)))``;
    * width limits (``th * sw > tw * sh``): ``new_w = tw``,
      ``new_h = min(th, max(1, rhu(sh * tw / sw)))``.

    Crop box ``(0, 0, sw, sh)``; offset ``((th - new_h) // 2, (tw - new_w) // 2)``. When the
    margin is odd, the extra row (column) of padding is at the bottom (right).

Resize (``in`` source pixels to ``out`` output pixels, each axis alike)
-----------------------------------------------------------------------
No antialiasing: each output pixel reads at most two source pixels per axis, whatever the
scale. Pixel centres are at half-integers ("half-pixel centres"): output pixel ``d`` (0-based)
maps to the source coordinate

    ``x = (d + 0.5) * in / out - 0.5``, computed as ``((2*d + 1) * in - out) / (2 * out)``.

``nearest``
    ``i = min(((2*d + 1) * in) // (2 * out), in - 1)``, i.e. ``floor((d + 0.5) * in / out)``
    in exact arithmetic. The output pixel copies source pixel ``(i_row, i_col)``. A coordinate
    exactly between two pixels (a tie: ``(2*d + 1) * in`` is a multiple of ``2 * out``, as on
    every pixel of an exact 2:1 reduction) takes the higher index. This is PyTorch's
    ``nearest-exact``, ONNX ``Resize`` (``nearest``, ``half_pixel``,
    ``nearest_mode = round_prefer_ceil``) and TensorFlow 2's ``tf.image.resize(method="nearest")``;
    those compute in float32 and so take the lower index at a few ties where ``in / out`` is not
    a float32 number (TensorFlow, 2 -> 41 pixels: output 20). Skia's nearest sampling and
    OpenCV's ``INTER_NEAREST_EXACT`` take the lower index at many or all ties, and OpenCV's
    ``INTER_NEAREST`` and PyTorch's ``nearest`` use ``floor(d * in / out)``: where nearest must
    agree across platforms, prefer bilinear.

``bilinear``
    Per axis: clamp ``x`` to ``[0, in - 1]``; neighbours ``i0 = floor(x)`` and
    ``i1 = min(i0 + 1, in - 1)``; weight ``f = x - i0`` (weight ``1 - f`` on ``i0``, ``f`` on
    ``i1``). With ``(y0, y1, fy)`` for the row and ``(x0, x1, fx)`` for the column, and ``p(r, c)``
    a source value of one channel:

        ``top    = (1 - fx) * p(y0, x0) + fx * p(y0, x1)``
        ``bottom = (1 - fx) * p(y1, x0) + fx * p(y1, x1)``
        ``value  = (1 - fy) * top + fy * bottom``

    (along the row first, then between the two rows; the order changes the value only by
    floating-point rounding). Checked within one level on downscales to 0.35x and below,
    upscales to 2.5x and 1-pixel sizes: TensorFlow 2
    (``tf.image.resize(method="bilinear", antialias=False)``), PyTorch
    (``interpolate(mode="bilinear", align_corners=False, antialias=False)``, float and uint8),
    OpenCV ``cv2.resize`` with ``INTER_LINEAR`` or ``INTER_LINEAR_EXACT``, ONNX Runtime
    ``Resize`` (``linear``, ``half_pixel``, ``antialias = 0``; ``pytorch_half_pixel`` differs
    when an output side is 1) and Skia's bilinear sampling without mipmaps. Not this arithmetic:
    Pillow's ``BILINEAR`` and any scaler that filters or mipmaps on a downscale (sharp/libvips
    ``linear``, Skia with mipmaps, vImage, ``CILanczosScaleTransform``).

Rounding
--------
Each channel's ``value`` becomes ``min(255, max(0, floor(value + 0.5)))`` (round half up, not
half to even; the clip is a no-op for bilinear, whose weights are convex). The reference
computes in float64. An implementation in float32 lands within one level of it, and equals it
except where ``value`` is within float32 rounding of ``k + 0.5``; so does one in fixed point
whose weights keep enough bits (OpenCV's 11 bits do; 4-bit weights can miss by 10 levels and
more).

Padding
-------
Pixels outside the placed box take the pad value, given per channel (0..255).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FITS = ("stretch", "center_crop", "letterbox")
METHODS = ("bilinear", "nearest")

# Bilinear output is produced in bands of rows holding about this many float64 values each,
# so a large resize keeps its temporaries small (and in cache) without a Python loop per row.
_BAND_VALUES = 1 << 17


@dataclass(frozen=True)
class Placement:
    """Where the source goes in the output: crop, resize, then place.

    ``crop`` is ``(left, top, right, bottom)`` in source pixels (right and bottom exclusive),
    ``size`` the ``(height, width)`` the cropped region is resized to, ``offset`` the
    ``(top, left)`` where the resized region lands in the target. The output has the target's
    size; outside the placed region it holds the pad value.
    """

    crop: tuple[int, int, int, int]
    size: tuple[int, int]
    offset: tuple[int, int]


def _rhu(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded half up, exactly (both non-negative integers)."""
    return (2 * numerator + denominator) // (2 * denominator)


def _check_hw(name: str, hw: tuple[int, int]) -> tuple[int, int]:
    if len(hw) != 2:
        raise ValueError(f"{name} must be (height, width), got {hw!r}")
    height, width = (int(v) for v in hw)
    if height != hw[0] or width != hw[1] or height < 1 or width < 1:
        raise ValueError(f"{name} must be two positive integers, got {hw!r}")
    return height, width


def place(source_hw: tuple[int, int], target_hw: tuple[int, int], fit: str) -> Placement:
    """Compute the crop, resize size and offset of ``fit`` (see the module specification).

    ``stretch``: the whole image to the whole target. ``center_crop``: the largest centred
    region with the target's aspect ratio, resized to the target. ``letterbox``: the whole
    image scaled by ``min(th / sh, tw / sw)`` (sizes rounded half up, at least 1 pixel),
    centred, the rest padded.
    """
    sh, sw = _check_hw("source size", source_hw)
    th, tw = _check_hw("target size", target_hw)
    whole = (0, 0, sw, sh)
    if fit == "stretch":
        return Placement(crop=whole, size=(th, tw), offset=(0, 0))
    if fit == "center_crop":
        if sw * th > sh * tw:  # source wider than the target: cut left and right
            crop_w = max(1, _rhu(sh * tw, th))
            left = (sw - crop_w) // 2
            return Placement(crop=(left, 0, left + crop_w, sh), size=(th, tw), offset=(0, 0))
        if sw * th < sh * tw:  # source taller: cut top and bottom
            crop_h = max(1, _rhu(sw * th, tw))
            top = (sh - crop_h) // 2
            return Placement(crop=(0, top, sw, top + crop_h), size=(th, tw), offset=(0, 0))
        return Placement(crop=whole, size=(th, tw), offset=(0, 0))
    if fit == "letterbox":
        if th * sw <= tw * sh:  # th / sh <= tw / sw: the height limits
            new_h, new_w = th, min(tw, max(1, _rhu(sw * th, sh)))
        else:
            new_h, new_w = min(th, max(1, _rhu(sh * tw, sw))), tw
        return Placement(
            crop=whole, size=(new_h, new_w), offset=((th - new_h) // 2, (tw - new_w) // 2)
        )
    raise ValueError(f"unknown fit {fit!r}: expected one of {', '.join(FITS)}")


def _check_pixels(pixels: np.ndarray) -> None:
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 3:
        raise ValueError("pixels must be a uint8 array of shape (height, width, channels)")
    if min(pixels.shape) < 1:
        raise ValueError(f"pixels must not be empty, got shape {pixels.shape}")


def nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each output pixel: ``min(((2d + 1) * in) // (2 * out), in - 1)``."""
    d = np.arange(n_out, dtype=np.int64)
    return np.minimum(((2 * d + 1) * n_in) // (2 * n_out), n_in - 1).astype(np.intp)


def bilinear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two source indices and the weight of the second for each output pixel.

    ``x = ((2d + 1) * in - out) / (2 * out)`` clamped to ``[0, in - 1]``; returns
    ``(floor(x), min(floor(x) + 1, in - 1), x - floor(x))``.
    """
    d = np.arange(n_out, dtype=np.float64)
    x = np.clip(((2.0 * d + 1.0) * n_in - n_out) / (2.0 * n_out), 0.0, n_in - 1.0)
    lower = np.floor(x)
    i0 = lower.astype(np.intp)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, x - lower


def resize_plain(pixels: np.ndarray, size: tuple[int, int], method: str) -> np.ndarray:
    """Resize uint8 ``(H, W, C)`` to uint8 ``(h, w, C)`` without antialiasing.

    ``method`` is ``"bilinear"`` or ``"nearest"``. Half-pixel centres: output pixel ``d``
    reads the source at ``(d + 0.5) * (in / out) - 0.5``; bilinear blends the two nearest
    source pixels per axis (along the row first, then between rows) in float64 and rounds half
    up; nearest takes ``min(floor((d + 0.5) * in / out), in - 1)``. The module docstring is
    the full specification.
    """
    _check_pixels(pixels)
    out_h, out_w = _check_hw("size", size)
    in_h, in_w, channels = pixels.shape
    if method == "nearest":
        rows = nearest_indices(in_h, out_h)
        cols = nearest_indices(in_w, out_w)
        return np.ascontiguousarray(pixels[rows[:, None], cols[None, :]])
    if method != "bilinear":
        raise ValueError(f"unknown resize method {method!r}: expected one of {', '.join(METHODS)}")
    y0, y1, fy = bilinear_taps(in_h, out_h)
    x0, x1, fx = bilinear_taps(in_w, out_w)
    if (in_h, in_w) == (out_h, out_w):
        return pixels.copy()  # every tap lands on a pixel centre with weight 0
    wx1 = fx[None, :, None]
    wx0 = 1.0 - wx1
    out = np.empty((out_h, out_w, channels), dtype=np.uint8)
    band = max(1, _BAND_VALUES // (out_w * channels))
    for start in range(0, out_h, band):
        stop = min(out_h, start + band)
        # along the row first, once per source row this band reads ...
        used = np.unique(np.concatenate((y0[start:stop], y1[start:stop])))
        source = pixels[used]
        across = np.multiply(np.take(source, x0, axis=1), wx0)
        across += np.multiply(np.take(source, x1, axis=1), wx1)
        # ... then between the two rows of each output row
        wy1 = fy[start:stop, None, None]
        value = np.take(across, np.searchsorted(used, y0[start:stop]), axis=0)
        value *= 1.0 - wy1
        value += np.take(across, np.searchsorted(used, y1[start:stop]), axis=0) * wy1
        value += 0.5
        np.floor(value, out=value)
        np.clip(value, 0.0, 255.0, out=value)
        out[start:stop] = value
    return out


def fit_image(
    pixels: np.ndarray,
    target_hw: tuple[int, int],
    fit: str,
    method: str,
    pad: tuple[int, ...],
) -> np.ndarray:
    """Crop, resize and pad uint8 ``(H, W, C)`` to uint8 ``(th, tw, C)`` as ``fit`` says.

    :func:`place` gives the crop box, the resize size and the offset; the crop is resized with
    :func:`resize_plain` (``method``) and placed on a canvas filled with ``pad`` (one value per
    channel, or one value for all channels; used only by ``letterbox``).
    """
    _check_pixels(pixels)
    th, tw = _check_hw("target size", target_hw)
    channels = pixels.shape[2]
    if len(pad) not in (1, channels):
        raise ValueError(f"pad needs 1 or {channels} values, got {len(pad)}")
    if any(int(v) != v or not 0 <= v <= 255 for v in pad):
        raise ValueError(f"pad values must be integers in 0..255, got {pad!r}")
    placement = place((pixels.shape[0], pixels.shape[1]), (th, tw), fit)
    left, top, right, bottom = placement.crop
    resized = resize_plain(pixels[top:bottom, left:right], placement.size, method)
    if placement.size == (th, tw):
        return resized
    out = np.empty((th, tw, channels), dtype=np.uint8)
    out[...] = np.asarray(pad, dtype=np.uint8)
    row, col = placement.offset
    new_h, new_w = placement.size
    out[row : row + new_h, col : col + new_w] = resized
    return out
