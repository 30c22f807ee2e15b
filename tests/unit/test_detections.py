"""Detector outputs decoded and matched as detections (YOLOv8 heads, both layouts)."""

from __future__ import annotations

import numpy as np
import pytest

from edgepack.drift.detections import (
    LAYOUTS,
    box_iou,
    decode,
    detection_drift,
    recognise_layout,
)

CENTRES = [(100.0, 100.0), (300.0, 100.0), (100.0, 400.0), (300.0, 400.0)]  # 200+ px apart
ANCHORS_OF_DETECTIONS = [2, 5, 11, 17]
SIZE = 40.0  # every detection is a 40 x 40 box
CLASSES = 3


def detector_output(
    samples: int = 4, anchors: int = 400, classes: int = CLASSES, seed: int = 0
) -> np.ndarray:
    """``[N, 4 + C, A]``: background anchors (random boxes, scores < 0.05) and four detections
    per sample (score 0.9 for class ``(d + s) % C`` at ``CENTRES[d]``)."""
    rng = np.random.default_rng(seed)
    rows = np.empty((samples, 4 + classes, anchors), dtype=np.float32)
    rows[:, 0:2] = rng.uniform(0, 640, (samples, 2, anchors))
    rows[:, 2:4] = rng.uniform(10, 100, (samples, 2, anchors))
    rows[:, 4:] = rng.uniform(0, 0.05, (samples, classes, anchors))
    for s in range(samples):
        for d, (anchor, (cx, cy)) in enumerate(zip(ANCHORS_OF_DETECTIONS, CENTRES, strict=True)):
            rows[s, :4, anchor] = (cx, cy, SIZE, SIZE)
            rows[s, 4:, anchor] = 0.01
            rows[s, 4 + (d + s) % classes, anchor] = 0.9
    return rows


def in_layout(rows: np.ndarray, layout: str) -> np.ndarray:
    return rows if layout == "channels_first" else np.ascontiguousarray(rows.transpose(0, 2, 1))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_identical_outputs_match_every_detection(layout: str) -> None:
    reference = in_layout(detector_output(), layout)
    assert recognise_layout(reference) == layout
    drift = detection_drift("det", reference, reference.copy(), layout)
    assert (drift.float_detections, drift.quantized_detections, drift.matched) == (16, 16, 16)
    assert (drift.recall, drift.precision, drift.mean_iou) == (1.0, 1.0, 1.0)
    assert (drift.name, drift.layout, drift.score_threshold, drift.iou_threshold) == (
        "det",
        layout,
        0.25,
        0.5,
    )


@pytest.mark.parametrize("layout", LAYOUTS)
def test_scores_quantized_to_zero_detect_nothing(layout: str) -> None:
    rows = detector_output()
    quantized = rows.copy()
    quantized[:, 4:] = 0.0  # the measured failure: one int8 scale for boxes and scores
    drift = detection_drift("det", in_layout(rows, layout), in_layout(quantized, layout), layout)
    assert (drift.float_detections, drift.quantized_detections, drift.matched) == (16, 0, 0)
    assert drift.recall == 0.0
    assert drift.precision is None and drift.mean_iou is None


@pytest.mark.parametrize("layout", LAYOUTS)
def test_boxes_moved_further_than_their_size_are_missed(layout: str) -> None:
    rows = detector_output()
    quantized = rows.copy()
    quantized[:, 0, ANCHORS_OF_DETECTIONS[:2]] += 2.5 * SIZE  # half the detections, 100 px right
    drift = detection_drift("det", in_layout(rows, layout), in_layout(quantized, layout), layout)
    assert (drift.float_detections, drift.quantized_detections, drift.matched) == (16, 16, 8)
    assert (drift.recall, drift.precision, drift.mean_iou) == (0.5, 0.5, 1.0)


def test_small_box_shifts_still_match_with_their_iou() -> None:
    rows = detector_output()
    quantized = rows.copy()
    quantized[:, 0, ANCHORS_OF_DETECTIONS] += 10.0  # IoU (30 * 40) / (2 * 1600 - 1200) = 0.6
    drift = detection_drift("det", rows, quantized, "channels_first")
    assert drift.matched == 16 and drift.mean_iou == pytest.approx(0.6)
    strict = detection_drift("det", rows, quantized, "channels_first", iou_threshold=0.65)
    assert strict.matched == 0 and strict.recall == 0.0 and strict.precision == 0.0


def test_a_swapped_class_is_not_matched() -> None:
    rows = detector_output()
    quantized = rows.copy()
    anchor = ANCHORS_OF_DETECTIONS[0]  # classes 0, 1, 2, 0 in samples 0..3
    quantized[:, 4:, anchor] = quantized[:, 4:, anchor][:, ::-1]  # 0 <-> 2; class 1 stays
    drift = detection_drift("det", rows, quantized, "channels_first")
    assert (drift.float_detections, drift.quantized_detections, drift.matched) == (16, 16, 13)
    assert drift.recall == drift.precision == 13 / 16
    assert drift.mean_iou == 1.0


@pytest.mark.parametrize("layout", LAYOUTS)
def test_nms_removes_a_duplicate_of_the_same_class_only(layout: str) -> None:
    rows = detector_output(samples=1)
    boxes, scores, classes = decode(in_layout(rows, layout)[0], layout, 0.25)
    assert len(boxes) == 4 and scores.tolist() == pytest.approx([0.9] * 4)
    assert classes.tolist() == [0, 1, 2, 0]
    assert np.array_equal(boxes[0], [80.0, 80.0, 120.0, 120.0])  # xyxy of (100, 100, 40, 40)
    duplicate = rows.copy()
    duplicate[0, :4, 300] = (102.0, 100.0, SIZE, SIZE)  # IoU 0.905 with detection 0
    duplicate[0, 4:, 300] = (0.8, 0.0, 0.0)
    assert len(decode(in_layout(duplicate, layout)[0], layout, 0.25)[0]) == 4
    duplicate[0, 4:, 300] = (0.0, 0.8, 0.0)  # same box, another class: kept
    boxes, scores, classes = decode(in_layout(duplicate, layout)[0], layout, 0.25)
    assert len(boxes) == 5 and scores[-1] == pytest.approx(0.8) and classes[-1] == 1
    duplicate[0, :4, 300] = (120.0, 100.0, SIZE, SIZE)  # same class, IoU 1/3 < 0.7: kept
    duplicate[0, 4:, 300] = (0.8, 0.0, 0.0)
    assert len(decode(in_layout(duplicate, layout)[0], layout, 0.25)[0]) == 5


def test_decode_threshold_is_inclusive_and_detections_are_capped() -> None:
    rows = detector_output(samples=1)
    rows[0, 4:, ANCHORS_OF_DETECTIONS[3]] = (0.25, 0.0, 0.0)
    assert len(decode(rows[0], "channels_first", 0.25)[0]) == 4
    assert len(decode(rows[0], "channels_first", 0.2500001)[0]) == 3
    boxes, scores, _ = decode(rows[0], "channels_first", 0.25, max_detections=2)
    assert len(boxes) == 2 and scores.tolist() == pytest.approx([0.9, 0.9])
    assert len(decode(rows[0], "channels_first", 0.0)[0]) == 300  # all 400 anchors pass


def test_box_iou_is_pairwise() -> None:
    first = np.array([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 0.0, 0.0]])
    second = np.array([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0], [20, 20, 30, 30]])
    iou = box_iou(first, second)
    assert iou.shape == (2, 3)
    assert iou[0].tolist() == pytest.approx([1.0, 1 / 3, 0.0])
    assert iou[1].tolist() == [0.0, 0.0, 0.0]  # an empty box overlaps nothing


def test_layouts_are_recognised_only_when_unambiguous() -> None:
    rng = np.random.default_rng(5)
    rows = detector_output()
    assert recognise_layout(rows) == "channels_first"
    assert recognise_layout(rows.transpose(0, 2, 1)) == "channels_last"
    assert recognise_layout(rng.random((4, 1000))) is None  # a classifier
    assert recognise_layout(rng.random((4, 16, 32, 32))) is None  # an NCHW map
    assert recognise_layout(detector_output(anchors=20, classes=81)) is None  # [N, 85, 20]
    assert recognise_layout(detector_output(anchors=27, classes=3)) is None  # 27 < 4 * 7
    assert recognise_layout(detector_output(anchors=28, classes=3)) == "channels_first"
    logits = rows.copy()
    logits[:, 4:] = rng.normal(0.0, 3.0, logits[:, 4:].shape)  # scores outside [0, 1]
    assert recognise_layout(logits) is None
    normalised = rows.copy()
    normalised[:, :4] /= 640  # boxes in 0..1 look like scores
    assert recognise_layout(normalised) is None
    assert recognise_layout(rng.random((4, 4, 400))) is None  # no class row


def test_bad_layouts_and_shapes_are_refused() -> None:
    rows = detector_output()
    with pytest.raises(ValueError, match="layout must be one of"):
        detection_drift("det", rows, rows, "nhwc")
    with pytest.raises(ValueError, match="of one shape"):
        detection_drift("det", rows, rows[:2], "channels_first")
    with pytest.raises(ValueError, match="4 box rows"):
        decode(rows[0, :4], "channels_first", 0.25)  # boxes without a class row
    with pytest.raises(ValueError, match="4 box rows"):
        decode(rows, "channels_first", 0.25)  # the batch, not one sample
