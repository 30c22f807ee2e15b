"""Drift per channel (or per declared slice) of an output, and collapse detection.

A whole-tensor SQNR is dominated by the channels with the largest values: a detector head that
concatenates box coordinates (hundreds) and class scores (0 to 1) in one tensor keeps a good
SQNR while every score is quantized to zero. So when the channels of an output (its last axis)
differ in float range by more than :data:`RANGE_RATIO`, or when the user declares slices of an
output, each channel or slice is measured on its own, and one *collapses* when its float values
vary but its quantized values are constant, or when its SQNR is below 0 dB (the error is larger
than the signal).

Probability outputs (values in [0, 1] that sum to 1 per sample) are left to top-1 agreement:
rare classes there have tiny ranges by nature. Channels are split automatically only in
outputs of rank 2 or 3 (``(N, C)``, ``(N, anchors, C)``: heads and vectors); image-like
outputs (rank 4 and more, whose last axis may be a width) are split only along declared slices.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from edgepack.drift.metrics import sqnr_db

RANGE_RATIO = 10.0  # channels whose float ranges differ more than this are measured apart
MAX_CHANNELS = 4096  # wider last axes are feature vectors, not heterogeneous channels


@dataclass(frozen=True)
class ChannelDrift:
    """Float-vs-quantized metrics of one channel or declared slice of an output's last axis."""

    name: str
    start: int
    stop: int
    float_range: float
    sqnr_db: float
    collapsed: bool
    reason: str | None = None


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
) -> list[ChannelDrift] | None:
    """Per-slice metrics when ``slices`` are declared, per-channel metrics when the output's
    channels differ in range by more than :data:`RANGE_RATIO`; None when neither applies."""
    ref = np.asarray(reference, dtype=np.float64)
    out = np.asarray(quantized, dtype=np.float64)
    if ref.ndim < 2:
        return None
    width = ref.shape[-1]
    if slices:
        bounds = {name: parse_slice(text, width) for name, text in slices.items()}
        return [
            _measure(name, ref, out, start, width if stop is None else stop)
            for name, (start, stop) in bounds.items()
        ]
    if ref.ndim > 3 or not 2 <= width <= MAX_CHANNELS or _is_probability(ref):
        return None
    ranges = _ranges(ref)
    varying = ranges[ranges > 0]
    if varying.size < 2 or varying.max() <= RANGE_RATIO * varying.min():
        return None
    return [_measure(f"channel {c}", ref, out, c, c + 1) for c in range(width)]


def collapsed_channels(channels: Sequence[ChannelDrift] | None) -> list[ChannelDrift]:
    return [channel for channel in channels or () if channel.collapsed]


def _measure(name: str, ref: np.ndarray, out: np.ndarray, start: int, stop: int) -> ChannelDrift:
    part_ref = ref[..., start:stop]
    part_out = out[..., start:stop]
    float_range = float(np.ptp(part_ref)) if part_ref.size else 0.0
    sqnr = sqnr_db(part_ref, part_out)
    reason = None
    if float_range > 0:
        if np.ptp(part_out) == 0:
            reason = f"quantized values constant ({float(part_out.flat[0]):g})"
        elif sqnr < 0:
            reason = f"SQNR {sqnr:.1f} dB < 0 dB"
    return ChannelDrift(name, start, stop, float_range, sqnr, reason is not None, reason)


def _ranges(ref: np.ndarray) -> np.ndarray:
    flat = ref.reshape(-1, ref.shape[-1])
    return np.asarray(flat.max(axis=0) - flat.min(axis=0))


def _is_probability(ref: np.ndarray) -> bool:
    if ref.min() < 0 or ref.max() > 1:
        return False
    return bool(np.allclose(ref.sum(axis=-1), 1.0, atol=1e-3))
