"""Detector outputs decoded and matched as detections (YOLOv8 heads, both layouts)."""

from __future__ import annotations

import numpy as np
import pytest

from edgepack.drift.detections import (
    ROW_LAYOUTS,
    box_iou,
    decode,
    detection_drift,
    recognise_layout,
)
from edgepack.drift.regions import decode_map, label_regions, looks_like_map

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


@pytest.mark.parametrize("layout", ROW_LAYOUTS)
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


@pytest.mark.parametrize("layout", ROW_LAYOUTS)
def test_scores_quantized_to_zero_detect_nothing(layout: str) -> None:
    rows = detector_output()
    quantized = rows.copy()
    quantized[:, 4:] = 0.0  # the measured failure: one int8 scale for boxes and scores
    drift = detection_drift("det", in_layout(rows, layout), in_layout(quantized, layout), layout)
    assert (drift.float_detections, drift.quantized_detections, drift.matched) == (16, 0, 0)
    assert drift.recall == 0.0
    assert drift.precision is None and drift.mean_iou is None


@pytest.mark.parametrize("layout", ROW_LAYOUTS)
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


@pytest.mark.parametrize("layout", ROW_LAYOUTS)
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
    with pytest.raises(ValueError, match="and one shape"):
        detection_drift("det", rows, rows[:2], "channels_first")
    with pytest.raises(ValueError, match="4 box rows"):
        decode(rows[0, :4], "channels_first", 0.25)  # boxes without a class row
    with pytest.raises(ValueError, match="4 box rows"):
        decode(rows, "channels_first", 0.25)  # the batch, not one sample


def probability_map(
    samples: int = 3, size: int = 64, lines: int = 4, seed: int = 0, channels_first: bool = True
) -> np.ndarray:
    """A DBNet-style map: ``lines`` text lines per sample (8 px tall, 40 px long, probability
    0.95) on a background of 0.02, with sigmoid-like noise."""
    rng = np.random.default_rng(seed)
    maps = rng.uniform(0.0, 0.04, (samples, size, size))
    for sample in range(samples):
        for line in range(lines):
            top = 4 + line * 14
            maps[sample, top : top + 8, 6 + sample : 46 + sample] = 0.95
    maps = maps.astype(np.float32)
    return maps[:, None] if channels_first else maps[..., None]


def test_map_regions_are_the_text_lines() -> None:
    boxes, scores, classes = decode_map(probability_map()[0, 0])
    assert boxes.tolist() == [[6, 4 + 14 * k, 46, 12 + 14 * k] for k in range(4)]
    assert np.allclose(scores, 0.95) and classes.tolist() == [0, 0, 0, 0]


def test_regions_are_8_connected_and_small_ones_dropped() -> None:
    mask = np.zeros((12, 12), dtype=bool)
    mask[1, 1] = mask[2, 2] = mask[3, 3] = True  # a diagonal: one region
    mask[6:9, 6:11] = True
    mask[8, 5] = True  # touches the block by a corner
    labels = label_regions(mask)
    assert len(np.unique(labels[mask])) == 2 and (labels[~mask] == -1).all()
    probs = mask.astype(np.float64)
    boxes, _, _ = decode_map(probs)
    # the diagonal is 3 x 3 and kept; a lone pixel would be under MIN_SIDE
    assert sorted(boxes.tolist()) == [[1, 1, 4, 4], [5, 6, 11, 9]]
    lone = np.zeros((12, 12))
    lone[5, 5] = 1.0
    assert len(decode_map(lone)[0]) == 0


def test_a_region_needs_its_mean_probability_over_the_box_score() -> None:
    probs = np.zeros((20, 20))
    probs[2:8, 2:12] = 0.5  # above the binarisation (0.3), under the box score (0.6)
    probs[12:18, 2:12] = 0.7
    boxes, scores, _ = decode_map(probs)
    assert boxes.tolist() == [[2, 12, 12, 18]] and np.allclose(scores, [0.7])


@pytest.mark.parametrize("channels_first", [True, False])
def test_maps_are_recognised_and_matched(channels_first: bool) -> None:
    reference = probability_map(channels_first=channels_first)
    assert recognise_layout(reference) == "map"
    same = detection_drift("map", reference, reference.copy(), "map")
    assert (same.float_detections, same.matched, same.recall, same.mean_iou) == (12, 12, 1.0, 1.0)
    assert same.score_threshold == 0.6
    faded = reference.copy()
    faded[1] = 0.2  # one sample's lines fall under the binarisation: 4 of 12 lost
    assert detection_drift("map", reference, faded, "map").recall == pytest.approx(8 / 12)
    joined = reference.copy()
    if channels_first:
        joined[:, 0, 4:60, 6:48] = 0.95  # the four lines merge into one block
    else:
        joined[:, 4:60, 6:48, 0] = 0.95
    merged = detection_drift("map", reference, joined, "map")
    assert (merged.quantized_detections, merged.matched) == (3, 0)


def test_a_sigmoid_rounded_past_one_is_still_a_probability() -> None:
    # onnxruntime's float sigmoid gives 1.0000001 on PP-OCRv4's detector (64 evaluation pages)
    past_one = np.nextafter(np.float32(1), np.float32(2))
    reference = probability_map().astype(np.float32)
    reference[0, 0, 10, 10] = past_one
    assert reference.max() > 1 and recognise_layout(reference) == "map"
    assert not looks_like_map(reference * 1.01)  # past rounding: not probabilities
    rows = detector_output()
    rows[0, 4, 0] = past_one  # a class score
    assert recognise_layout(rows) == "channels_first"
    rows[0, 4, 0] = 1.01
    assert recognise_layout(rows) is None


def test_images_and_multi_channel_maps_are_not_maps() -> None:
    rng = np.random.default_rng(2)
    assert not looks_like_map(rng.random((2, 1, 64, 64)))  # an image in [0, 1]: not saturated
    assert not looks_like_map(np.repeat(probability_map(), 3, axis=1))  # three channels
    assert not looks_like_map(probability_map(size=12))  # smaller than 16 px
    assert not looks_like_map(probability_map() * 3)  # not probabilities
    with pytest.raises(ValueError, match="rank 4"):
        detection_drift("m", probability_map()[:, 0], probability_map()[:, 0], "map")
