"""Drift per channel (or per declared slice) of an output, and collapse detection.

A whole-tensor SQNR is dominated by the channels with the largest values: a detector head that
concatenates box coordinates (hundreds) and class scores (0 to 1) in one tensor keeps a good
SQNR while every score is quantized to zero. So the channels of an output, or the slices the
user declares, are measured on their own, and one *collapses* when its float values vary but
its quantized values are constant, or when its SQNR is below 0 dB (the error is larger than the
signal).

Which axis holds the channels (:func:`channel_axis`); axis 0 is the batch:

* candidate axes: every non-batch axis of a rank 2 or 3 output (``(N, C)``, ``(N, C, anchors)``,
  ``(N, anchors, C)``); axis 1 and the last axis of a rank 4+ output (image-like NCHW / NHWC
  maps, whose other axes are heights and widths), none when one of those two has width 1 and
  the other is wider than :data:`MAP_WIDTH` (a one-channel map such as a text detector's
  probabilities: that axis is spatial); only axes of width 2 to :data:`MAX_CHANNELS`;
* the *range ratio* of a candidate is max / min of the per-index float ranges (max - min over
  all other axes), among the indices whose range is > 0 (at least two of them, else no ratio);
* the channel axis is the candidate with the largest range ratio (the first one on a tie), and
  the output is split along it only when that ratio exceeds :data:`RANGE_RATIO`.

Probability outputs (all values in [0, 1], summing to 1 along the last axis, or along axis 1 of a
rank 4+ map: a per-pixel softmax) are never split: they are left to top-1 agreement, and rare
classes there have tiny ranges by nature.

Declared slices (``slices``) index ``slice_axis`` (the last axis unless told otherwise) and are
measured whatever the ranges or the rank. Each :class:`ChannelDrift` records the axis it indexes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from edgepack.drift.metrics import sqnr_db

RANGE_RATIO = 10.0  # channels whose float ranges differ more than this are measured apart
MAX_CHANNELS = 4096  # wider axes are feature vectors or anchors, not heterogeneous channels
MAP_WIDTH = 16  # a one-channel rank-4 output wider than this is an image-like map
DEAD_CHANNEL = 1e-4  # channels whose float range is below this share of the widest: not judged


@dataclass(frozen=True)
class ChannelDrift:
    """Float-vs-quantized metrics of one channel or declared slice of an output.

    ``start:stop`` are indices along ``axis``; :func:`channel_drift` records ``axis`` as a
    non-negative number (1 for ``(N, C, ...)``); the default -1 means the last axis.
    """

    name: str
    start: int
    stop: int
    float_range: float
    sqnr_db: float
    collapsed: bool
    reason: str | None = None
    axis: int = -1


def parse_slice(text: str, width: int | None = None) -> tuple[int, int | None]:
    """``"0:4"`` -> (0, 4); ``"4:"`` -> (4, None); ``"7"`` -> (7, 8). Raises ValueError."""
    parts = str(text).split(":")
    try:
        if len(parts) == 1:
            start = int(parts[0])
            return start, start + 1
        if len(parts) == 2:
            start = int(parts[0]) if parts[0].strip() else 0
            stop = int(parts[1]) if parts[1].strip() else None
            if start < 0 or (stop is not None and stop <= start):
                raise ValueError
            if width is not None and (stop or width) > width:
                raise ValueError
            return start, stop
    except ValueError:
        pass
    raise ValueError(f"expected a slice of the last axis like '0:4' or '4:', got {text!r}")


def channel_drift(
    reference: np.ndarray,
    quantized: np.ndarray,
    slices: Mapping[str, str] | None = None,
    slice_axis: int = -1,
) -> list[ChannelDrift] | None:
    """Per-slice metrics when ``slices`` are declared (indices along ``slice_axis``), else
    per-channel metrics along :func:`channel_axis`; None when neither applies (rank < 2,
    probabilities, or no axis whose channel ranges differ by more than :data:`RANGE_RATIO`).

    Raises ValueError when a slice does not fit, or ``slice_axis`` is not a non-batch axis.
    """
    ref = _as_float(reference)
    out = _as_float(quantized)
    if ref.ndim < 2:
        return None
    if slices:
        axis = _non_batch_axis(slice_axis, ref.ndim)
        width = ref.shape[axis]
        bounds = {name: parse_slice(text, width) for name, text in slices.items()}
        return [
            _measure(name, ref, out, axis, start, width if stop is None else stop)
            for name, (start, stop) in bounds.items()
        ]
    if _is_probability(ref):
        return None
    found = channel_axis(ref)
    if found is None:
        return None
    floor = DEAD_CHANNEL * float(_ranges(ref, found).max())
    return [
        _measure(f"channel {c}", ref, out, found, c, c + 1, floor) for c in range(ref.shape[found])
    ]


def channel_axis(reference: np.ndarray) -> int | None:
    """The non-negative axis holding heterogeneous channels (the module docstring's rule), or
    None when no candidate axis has a range ratio above :data:`RANGE_RATIO`."""
    ref = _as_float(reference)
    best: tuple[float, int] | None = None
    for axis in _candidate_axes(ref):
        ratio = _range_ratio(_ranges(ref, axis))
        if ratio is not None and (best is None or ratio > best[0]):
            best = (ratio, axis)
    if best is None or not best[0] > RANGE_RATIO:
        return None
    return best[1]


MIXED_RANGE_RATIO = 16.0


def mixed_range_outputs(
    outputs: Mapping[str, np.ndarray], ratio: float = MIXED_RANGE_RATIO
) -> dict[str, tuple[int, float]]:
    """Outputs whose channels' float ranges differ more than ``ratio`` (a detector's boxes in
    pixels beside its 0..1 scores): with one int8 scale, the narrowest channel gets fewer than
    256 / ``ratio`` steps. Probability outputs are not (rare classes have small ranges by
    nature). Per output name, its channel axis and range ratio."""
    found = {}
    for name, values in outputs.items():
        axis = None if _is_probability(_as_float(values)) else channel_axis(values)
        if axis is None:
            continue
        measured = _range_ratio(_ranges(_as_float(values), axis))
        if measured is not None and measured > ratio:
            found[name] = (axis, measured)
    return found


def collapsed_channels(channels: Sequence[ChannelDrift] | None) -> list[ChannelDrift]:
    """The channels (or slices) that collapsed, in their order."""
    return [channel for channel in channels or () if channel.collapsed]


def _candidate_axes(ref: np.ndarray) -> list[int]:
    if ref.ndim >= 4 and _one_channel_map(ref.shape):
        return []  # a text detector's probability map: its other axes are spatial
    axes = range(1, ref.ndim) if ref.ndim <= 3 else sorted({1, ref.ndim - 1})
    return [axis for axis in axes if 2 <= ref.shape[axis] <= MAX_CHANNELS]


def _one_channel_map(shape: tuple[int, ...]) -> bool:
    """``(N, 1, H, W)`` or ``(N, H, W, 1)`` with the other end wider than
    :data:`MAP_WIDTH`: one channel over an image, not channels (``(N, 1, W, C)`` with a few
    channels, an NHWC tensor of height 1, stays a candidate)."""
    return (shape[1] == 1 and shape[-1] > MAP_WIDTH) or (shape[-1] == 1 and shape[1] > MAP_WIDTH)


def _range_ratio(ranges: np.ndarray) -> float | None:
    varying = ranges[ranges > 0]
    if varying.size < 2:
        return None
    with np.errstate(over="ignore"):
        return float(varying.max()) / float(varying.min())


def _ranges(ref: np.ndarray, axis: int) -> np.ndarray:
    others = tuple(a for a in range(ref.ndim) if a != axis)
    return np.asarray(ref.max(axis=others), dtype=np.float64) - ref.min(axis=others)


def _measure(
    name: str,
    ref: np.ndarray,
    out: np.ndarray,
    axis: int,
    start: int,
    stop: int,
    floor: float = 0.0,
) -> ChannelDrift:
    """A slice's metrics; it can collapse only when its float range exceeds ``floor`` (a
    channel that stays within a 10,000th of the widest one's range carries nothing to keep)."""
    index = (slice(None),) * axis + (slice(start, stop),)
    part_ref = ref[index]
    part_out = out[index]
    float_range = float(np.ptp(part_ref)) if part_ref.size else 0.0
    sqnr = sqnr_db(part_ref, part_out)
    reason = None
    if float_range > floor:
        if np.ptp(part_out) == 0:
            reason = f"quantized values constant ({float(part_out.flat[0]):g})"
        elif sqnr < 0:
            reason = f"SQNR {sqnr:.1f} dB < 0 dB"
    return ChannelDrift(
        name=name,
        start=start,
        stop=stop,
        float_range=float_range,
        sqnr_db=sqnr,
        collapsed=reason is not None,
        reason=reason,
        axis=axis,
    )


def _non_batch_axis(axis: int, ndim: int) -> int:
    normal = axis + ndim if axis < 0 else axis
    if not 1 <= normal < ndim:
        raise ValueError(f"slice axis {axis} is not a non-batch axis of a rank-{ndim} output")
    return normal


def _as_float(values: np.ndarray) -> np.ndarray:
    """Floating arrays as they are (no float64 copy of a large output), others as float64."""
    array = np.asarray(values)
    return array if np.issubdtype(array.dtype, np.floating) else array.astype(np.float64)


def _is_probability(ref: np.ndarray) -> bool:
    """Values in [0, 1] summing to 1 along the last axis (a classifier), or along axis 1 of
    a map (a segmentation's per-pixel softmax in NCHW)."""
    if ref.size == 0 or ref.min() < 0 or ref.max() > 1:
        return False
    axes = (-1, 1) if ref.ndim >= 4 else (-1,)
    return any(
        bool(np.allclose(ref.sum(axis=axis, dtype=np.float64), 1.0, atol=1e-3)) for axis in axes
    )
