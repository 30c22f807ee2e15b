"""``non_maximum_suppression`` in the Core ML emulator against TensorFlow's NMS (iOS15
signature, per class or not, padding, the best box when nothing passes) and the iOS17
layout (box axis last, no score threshold, no count)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.coreml._mil import IOS15, IOS17, mb, run

BOXES = 12


def _inputs(classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 20, (1, BOXES, 2))
    sizes = rng.uniform(2, 10, (1, BOXES, 2))
    boxes = np.concatenate([centres, sizes], axis=-1).astype(np.float32)
    scores = rng.permutation(np.linspace(-5, 5, BOXES * classes))  # no ties
    return boxes, scores.reshape(1, BOXES, classes).astype(np.float32)


def _tensorflow_ids(boxes: np.ndarray, best: np.ndarray, iou: float, score: float, cap: int):
    import tensorflow as tf

    x, y, w, h = np.split(boxes, 4, axis=-1)
    corners = np.concatenate([y - h / 2, x - w / 2, y + h / 2, x + w / 2], axis=-1)
    return tf.image.non_max_suppression(
        corners, best, max_output_size=cap, iou_threshold=iou, score_threshold=score
    ).numpy()


@pytest.mark.parametrize(("iou", "score"), [(0.1, -10.0), (0.3, 0.0), (0.7, 2.5)])
def test_nms_against_tensorflow(iou: float, score: float) -> None:
    boxes, scores = _inputs(classes=3, seed=int(iou * 10))
    cap = 6
    selected, selected_scores, indices, counts = run(
        lambda b, s: mb.non_maximum_suppression(
            boxes=b, scores=s, iou_threshold=iou, score_threshold=score, max_boxes=cap
        ),
        [boxes, scores],
        target=IOS15,
        expect_ops=["non_maximum_suppression"],
    )
    best = scores[0].max(axis=-1)
    expected = _tensorflow_ids(boxes[0], best, iou, score, cap)
    if len(expected) == 0:  # Core ML returns the best box alone
        expected = np.array([np.argmax(best)])
    count = len(expected)
    assert counts.tolist() == [count]
    assert indices[0, :count].tolist() == expected.tolist()
    assert (indices[0, count:] == -1).all()
    np.testing.assert_array_equal(selected[0, :count], boxes[0, expected])
    np.testing.assert_array_equal(selected_scores[0, :count], scores[0, expected])
    assert (selected[0, count:] == 0).all() and (selected_scores[0, count:] == 0).all()


def test_per_class_suppression_keeps_overlapping_boxes_of_other_classes() -> None:
    # two identical boxes: one class each; a third overlapping the first, of its class
    boxes = np.array([[[5, 5, 4, 4], [5, 5, 4, 4], [5.5, 5, 4, 4]]], np.float32)
    scores = np.array([[[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]]], np.float32)

    def nms(per_class: bool) -> list[int]:
        _, _, indices, counts = run(
            lambda b, s: mb.non_maximum_suppression(
                boxes=b, scores=s, iou_threshold=0.5, score_threshold=0.0, max_boxes=3,
                per_class_suppression=per_class,
            ),
            [boxes, scores],
            target=IOS15,
        )  # fmt: skip
        return indices[0, : counts[0]].tolist()

    assert nms(per_class=False) == [0]  # the other two overlap it
    assert nms(per_class=True) == [0, 1]  # box 1 is another class; box 2 is suppressed


def test_ios17_layout_has_the_box_axis_last() -> None:
    boxes, scores = _inputs(classes=2, seed=7)
    selected, selected_scores, indices = run(
        lambda b, s: mb.non_maximum_suppression(boxes=b, scores=s, iou_threshold=0.3, max_boxes=5),
        [np.swapaxes(boxes, 1, 2).copy(), np.swapaxes(scores, 1, 2).copy()],
        target=IOS17,
        expect_ops=["non_maximum_suppression"],
    )
    expected = _tensorflow_ids(boxes[0], scores[0].max(-1), 0.3, -np.inf, 5)
    assert indices[0, : len(expected)].tolist() == expected.tolist()
    np.testing.assert_array_equal(selected[0, :, : len(expected)], boxes[0, expected].T)
    assert selected_scores.shape == (1, 2, 5)
