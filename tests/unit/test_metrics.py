"""Drift metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgepack.drift import compare_outputs
from edgepack.drift.metrics import (
    SQNR_CAP_DB,
    accuracy,
    cosine_similarity,
    max_abs_error,
    sqnr_db,
    top1_agreement,
)
from edgepack.options import Thresholds


def test_sqnr_matches_hand_computation() -> None:
    reference = np.array([[3.0, 4.0]])  # signal power 25
    test = np.array([[3.0, 3.0]])  # noise power 1
    assert sqnr_db(reference, test) == pytest.approx(10 * math.log10(25.0))


def test_sqnr_is_capped_when_exact_and_negative_for_zero_signal() -> None:
    ones = np.ones((2, 3))
    assert sqnr_db(ones, ones) == SQNR_CAP_DB
    assert sqnr_db(np.zeros((2, 3)), ones) == -SQNR_CAP_DB


def test_cosine_of_orthogonal_parallel_and_zero_rows() -> None:
    reference = np.array([[1.0, 0.0], [2.0, 2.0], [0.0, 0.0]])
    test = np.array([[0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    # rows: orthogonal (0), parallel (1), both zero (1) -> mean 2/3
    assert cosine_similarity(reference, test) == pytest.approx(2 / 3)


def test_max_abs_error() -> None:
    assert max_abs_error(np.array([[1.0, -2.0]]), np.array([[1.5, 1.0]])) == pytest.approx(3.0)


def test_top1_agreement_and_accuracy() -> None:
    reference = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    test = np.array([[0.8, 0.2], [0.6, 0.4], [0.7, 0.3], [0.1, 0.9]])
    labels = np.array([0, 1, 1, 1])
    assert top1_agreement(reference, test) == 0.75
    assert accuracy(reference, labels) == 0.75
    assert accuracy(test, labels) == 0.5


def test_report_verdict_names_every_broken_threshold() -> None:
    reference = {"scores": np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])}
    quantized = {"scores": np.array([[0.8, 0.2], [0.6, 0.4], [0.7, 0.3], [0.1, 0.9]])}
    report = compare_outputs(
        reference,
        quantized,
        np.array([0, 1, 1, 1]),
        Thresholds(min_agreement=0.9, max_drop=0.1, min_sqnr=30.0),
    )
    assert report.top1_agreement == 0.75
    assert report.accuracy_drop == pytest.approx(0.25)
    assert len(report.failures) == 3
    assert not report.passed
    assert report.to_dict()["verdict"] == "fail"


def test_report_passes_within_budget_and_skips_accuracy_without_labels() -> None:
    reference = {"scores": np.array([[0.9, 0.1], [0.2, 0.8]])}
    report = compare_outputs(reference, reference, None, Thresholds())
    assert report.passed
    assert report.accuracy_drop is None
    assert report.top1_agreement == 1.0


def test_non_classifier_output_has_no_agreement() -> None:
    reference = {"map": np.ones((2, 4, 4, 1))}
    report = compare_outputs(reference, {"map": np.ones((2, 4, 4, 1)) * 1.1}, None, Thresholds())
    assert report.top1_agreement is None
    assert report.outputs[0].sqnr_db == pytest.approx(20.0)
