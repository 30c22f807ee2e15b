"""Thresholds count whole samples and compare the figure shown; 95% intervals (issue 10)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgepack.drift import compare_outputs
from edgepack.drift.metrics import (
    paired_difference_interval,
    samples_needed,
    wilson_interval,
)
from edgepack.options import Thresholds


def _scores(classes: np.ndarray, count: int = 3) -> np.ndarray:
    return np.eye(count, dtype=np.float32)[classes] + 0.01


def _report(n: int, disagree: int, thresholds: Thresholds, labels: bool = True):
    truth = np.zeros(n, dtype=int)
    quant = truth.copy()
    quant[:disagree] = 1  # each disagreeing sample is also one lost correct answer
    return compare_outputs(
        {"p": _scores(truth)},
        {"p": _scores(quant)},
        truth if labels else None,
        thresholds,
    )


@pytest.mark.parametrize(("disagree", "passes"), [(1, True), (2, False)])
def test_one_sample_of_100_is_exactly_a_one_percent_drop(disagree: int, passes: bool) -> None:
    report = _report(100, disagree, Thresholds(min_agreement=None, max_drop=0.01))
    assert report.counts()["dropped"] == disagree
    assert report.passed is passes, report.failures
    if not passes:
        assert report.failures == ["accuracy drop 2.00% (2 of 100) > 1.00% (at most 1 of 100)"]


@pytest.mark.parametrize(("disagree", "passes"), [(4, True), (5, False)])
def test_agreement_budget_of_400_samples_is_396(disagree: int, passes: bool) -> None:
    # 0.99 * 400 is 396.00000000000006 in floating point: the budget must still be 396
    report = _report(400, disagree, Thresholds(min_agreement=0.99, max_drop=None))
    assert report.passed is passes, report.failures
    if not passes:
        assert report.failures == [
            "top-1 agreement 98.75% (395 of 400) < 99.00% (needs 396 of 400)"
        ]


def _sqnr_report(noise: float, min_sqnr: float):
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(64, 16)).astype(np.float64)
    scale = np.sqrt(np.sum(reference**2) / 10 ** (noise / 10) / reference.size)
    direction = rng.normal(size=reference.shape)
    direction *= np.sqrt(reference.size) / np.linalg.norm(direction)
    quantized = reference + scale * direction
    return compare_outputs(
        {"y": reference}, {"y": quantized}, None, Thresholds(None, None, min_sqnr)
    )


def test_sqnr_is_compared_as_shown() -> None:
    shown_equal = _sqnr_report(14.996, 15.0)  # shown as 15.00 dB: passes
    assert f"{shown_equal.outputs[0].sqnr_db:.2f}" == "15.00"
    assert shown_equal.passed, shown_equal.failures
    below = _sqnr_report(14.97, 15.0)
    assert below.failures == ["SQNR of 'y' 14.97 dB < 15.00 dB"]
    finer = _sqnr_report(14.996, 14.999)  # a threshold with more digits is shown with them
    assert finer.failures == [f"SQNR of 'y' {finer.outputs[0].sqnr_db:.3f} dB < 14.999 dB"]


def test_wilson_interval_known_values() -> None:
    # Brown, Cai & DasGupta (2001): Wilson interval for 0 of 10 and 10 of 10
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    low, high = wilson_interval(81, 263)  # Newcombe 1998, Table I: 0.2553 to 0.3662
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)


def test_paired_difference_interval_covers_the_true_drop() -> None:
    """Newcombe's method 10 keeps close to 95% coverage for paired outcomes (simulated)."""
    rng = np.random.default_rng(0)
    cells = np.array([0.80, 0.05, 0.02, 0.13])  # both right, float only, quantized only, neither
    true_drop = cells[1] - cells[2]
    draws = rng.multinomial(200, cells, size=2000)
    covered = [
        low <= true_drop <= high
        for low, high in (paired_difference_interval(*map(int, cell)) for cell in draws)
    ]
    assert 0.93 <= np.mean(covered) <= 0.975
    low, high = paired_difference_interval(150, 5, 5, 40)
    assert low < 0 < high and low >= -1 and high <= 1


def test_samples_needed_to_resolve_99_percent() -> None:
    needed = samples_needed(0.01)
    assert needed == 381
    assert wilson_interval(needed, needed)[0] >= 0.99 > wilson_interval(needed - 1, needed - 1)[0]


def test_report_carries_counts_and_intervals() -> None:
    report = _report(100, 1, Thresholds())
    data = report.to_dict()
    assert data["counts"] == {
        "agree": 99, "correct_float": 100, "correct_quantized": 99, "dropped": 1,
    }  # fmt: skip
    low, high = data["intervals"]["top1_agreement"]
    assert low < 0.99 < high and math.isclose(high, wilson_interval(99, 100)[1])
    drop_low, drop_high = data["intervals"]["accuracy_drop"]
    assert drop_low < 0.01 < drop_high
    no_labels = _report(100, 1, Thresholds(), labels=False).to_dict()
    assert no_labels["intervals"]["accuracy_drop"] is None


def test_a_budget_finer_than_one_sample_is_said() -> None:
    report = _report(50, 0, Thresholds(min_agreement=0.99, max_drop=0.01))
    notes = report.resolution()
    assert notes == [
        "the agreement budget (99.00%) is finer than one sample of 50 (2.00%); about 381 "
        "samples would resolve it",
        "the accuracy drop budget (1.00%) is finer than one sample of 50 (2.00%); about 381 "
        "samples would resolve it",
    ]
    assert report.to_dict()["resolution"] == notes


def test_an_interval_containing_the_budget_is_said() -> None:
    # 198 of 200 agree: 99.00%, the budget itself; the Wilson interval spans it
    report = _report(200, 2, Thresholds(min_agreement=0.99, max_drop=None), labels=False)
    (note,) = report.resolution()
    assert note.startswith("the 95% interval of the agreement [96.")
    assert "contains the budget 99.00%: 200 samples cannot tell" in note and "381" in note


def test_enough_samples_resolve_the_budget() -> None:
    report = _report(400, 0, Thresholds(min_agreement=0.99, max_drop=0.01))
    assert report.resolution() == []


@pytest.mark.parametrize(
    ("calibrating", "held_out", "expected"),
    [
        (1, 1, ["only 1 calibration samples", "1 held-out samples cannot resolve the 1.00%"]),
        (200, 100, ["100 held-out samples cannot resolve the 1.00% accuracy-drop budget"]),
        (200, 400, []),
    ],
)
def test_build_warns_about_a_split_too_small(
    calibrating: int, held_out: int, expected: list[str]
) -> None:
    from pathlib import Path

    from edgepack.api import split_warnings
    from edgepack.options import BuildOptions
    from edgepack.profiles import load_profile

    options = BuildOptions(load_profile("onnx"), None, Path("."))
    warnings = split_warnings(calibrating, held_out, options)
    assert len(warnings) == len(expected)
    for warning, start in zip(warnings, expected, strict=True):
        assert warning.startswith(start), warning
    if held_out < 381:
        assert all("about 381 would" in w for w in warnings if "held-out" in w)


def test_no_sample_budget_warning_without_a_classifier_output() -> None:
    """A detector's map or an embedding has no top-1: the agreement and accuracy budgets do
    not apply, so too few samples to resolve them is not worth a warning."""
    from pathlib import Path

    from edgepack.api import split_warnings
    from edgepack.options import BuildOptions
    from edgepack.profiles import load_profile

    options = BuildOptions(load_profile("onnx"), None, Path("."))
    assert len(split_warnings(200, 12, options)) == 1
    assert split_warnings(200, 12, options, classifies=False) == []
