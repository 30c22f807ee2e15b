"""Channels are found on whichever axis holds them: detector rows, NCHW and NHWC maps."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from edgepack.drift.channels import channel_axis, channel_drift, collapsed_channels

CLASSES = 6
ANCHORS = 300


def yolo_rows(samples: int = 8, seed: int = 0) -> np.ndarray:
    """``[N, 4 + C, A]``: pixel boxes (0..640) on rows 0:4, class scores (0..1) on rows 4:."""
    rng = np.random.default_rng(seed)
    boxes = 640 * rng.random((samples, 4, ANCHORS))
    scores = rng.random((samples, CLASSES, ANCHORS))
    return np.concatenate([boxes, scores], axis=1).astype(np.float32)


def scores_zeroed(reference: np.ndarray, axis: int) -> np.ndarray:
    quantized = reference.copy()
    np.moveaxis(quantized, axis, 0)[4:] = 0.0  # a view: zeroes rows 4: of ``axis``
    return quantized


def healthy(reference: np.ndarray, axis: int, seed: int = 1) -> np.ndarray:
    """About one int8 step of noise per channel, each channel on its own scale."""
    others = tuple(a for a in range(reference.ndim) if a != axis)
    ranges = np.ptp(reference, axis=others, keepdims=True)
    noise = np.random.default_rng(seed).uniform(-0.5, 0.5, reference.shape)
    return (reference + noise * ranges / 255).astype(np.float32)


def image_map(channels_last: bool, seed: int = 2) -> np.ndarray:
    """An ``[N, C, H, W]`` (or NHWC) map whose channel 2 has a tiny range (0..0.01)."""
    rng = np.random.default_rng(seed)
    nchw = rng.standard_normal((4, 5, 12, 10)) * 3.0
    nchw[:, 2] = 0.01 * rng.random((4, 12, 10))
    return np.moveaxis(nchw, 1, -1) if channels_last else nchw


@pytest.mark.parametrize(("layout", "axis"), [("rows", 1), ("columns", 2)])
def test_collapsed_scores_of_a_yolo_head_are_found_in_either_layout(layout: str, axis: int) -> None:
    reference = yolo_rows()
    if layout == "columns":
        reference = np.ascontiguousarray(reference.transpose(0, 2, 1))  # [N, A, 4 + C]
    channels = channel_drift(reference, scores_zeroed(reference, axis))
    assert channels is not None and len(channels) == 4 + CLASSES
    assert {c.axis for c in channels} == {axis}
    collapsed = collapsed_channels(channels)
    assert [c.name for c in collapsed] == [f"channel {k}" for k in range(4, 4 + CLASSES)]
    assert [(c.start, c.stop) for c in collapsed] == [(k, k + 1) for k in range(4, 4 + CLASSES)]
    assert all(c.reason == "quantized values constant (0)" for c in collapsed)
    assert all(c.sqnr_db == 200.0 and c.float_range > 600 for c in channels[:4])  # boxes exact


def test_the_anchor_axis_is_not_taken_for_channels() -> None:
    reference = yolo_rows()
    assert reference.shape[2] <= 4096  # a candidate, but its ranges are all alike
    assert channel_axis(reference) == 1
    assert channel_axis(reference.transpose(0, 2, 1)) == 2


@pytest.mark.parametrize(("channels_last", "axis"), [(False, 1), (True, 3)])
def test_a_zeroed_channel_of_an_image_map_is_found(channels_last: bool, axis: int) -> None:
    reference = image_map(channels_last)
    quantized = reference.copy()
    np.moveaxis(quantized, axis, 0)[2] = 0.0  # a view: zeroes channel 2 of ``axis``
    channels = channel_drift(reference, quantized)
    assert channels is not None and len(channels) == 5
    assert {c.axis for c in channels} == {axis}
    assert [(c.name, c.start) for c in collapsed_channels(channels)] == [("channel 2", 2)]


def test_rank_4_maps_look_only_at_axis_1_and_the_last_axis() -> None:
    rng = np.random.default_rng(3)
    reference = rng.standard_normal((2, 3, 6, 3))
    reference[:, :, 4] *= 1e-3  # a tiny "channel" on axis 2 (a height): not a candidate
    assert channel_axis(reference) is None
    assert channel_drift(reference, np.zeros_like(reference)) is None


@pytest.mark.parametrize(
    ("make", "axis"),
    [
        (yolo_rows, 1),
        (lambda: yolo_rows().transpose(0, 2, 1), 2),
        (lambda: image_map(False), 1),
        (lambda: image_map(True), 3),
    ],
)
def test_a_healthy_quantization_collapses_nothing(
    make: Callable[[], np.ndarray], axis: int
) -> None:
    reference = make()
    channels = channel_drift(reference, healthy(reference, axis))
    assert channels is not None and len(channels) == reference.shape[axis]
    assert collapsed_channels(channels) == []
    assert all(c.axis == axis and 35 < c.sqnr_db < 200 for c in channels)


def test_homogeneous_outputs_are_not_split() -> None:
    rng = np.random.default_rng(4)
    for shape in [(10, 8), (10, 8, 50), (10, 50, 8), (4, 5, 12, 10)]:
        reference = rng.uniform(-1.0, 1.0, shape)  # every channel ranges about 2
        assert channel_axis(reference) is None
        assert channel_drift(reference, np.zeros_like(reference)) is None


def test_declared_slices_on_axis_1() -> None:
    reference = yolo_rows()
    quantized = scores_zeroed(reference, 1)
    channels = channel_drift(reference, quantized, {"boxes": "0:4", "scores": "4:"}, slice_axis=1)
    assert channels is not None
    assert [(c.name, c.axis, c.start, c.stop, c.collapsed) for c in channels] == [
        ("boxes", 1, 0, 4, False),
        ("scores", 1, 4, 4 + CLASSES, True),
    ]
    assert channels[1].float_range == pytest.approx(1.0, abs=0.01)
    last = channel_drift(reference, quantized, {"first anchors": "0:4"})  # default: last axis
    assert last is not None and (last[0].axis, last[0].stop) == (2, 4)
    assert last[0].collapsed is False  # anchors 0:4 still hold their exact boxes


def test_declared_slices_must_fit_their_axis() -> None:
    reference = yolo_rows()
    with pytest.raises(ValueError, match="expected a slice"):
        channel_drift(reference, reference, {"x": "0:11"}, slice_axis=1)  # axis 1 has 10
    with pytest.raises(ValueError, match="not a non-batch axis"):
        channel_drift(reference, reference, {"x": "0:1"}, slice_axis=0)
    with pytest.raises(ValueError, match="not a non-batch axis"):
        channel_drift(reference, reference, {"x": "0:1"}, slice_axis=3)
