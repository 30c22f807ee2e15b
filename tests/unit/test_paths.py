"""Drift on several execution paths: every path judged, the worst one reported, the spread
between paths in output LSB and in top-1 answers."""

from __future__ import annotations

import numpy as np
import pytest

from edgepack.backends import BACKENDS
from edgepack.drift.paths import PathOutputs, compare_paths, path_spread
from edgepack.errors import ConfigError
from edgepack.options import Thresholds, parse_paths

STEP = 1 / 256  # an int8 probability output's quantization step


def _probabilities(n: int = 100, classes: int = 4) -> np.ndarray:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(n, classes)) * 3
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def _quantized(values: np.ndarray) -> np.ndarray:
    return np.round(values / STEP) * STEP


def _flip(values: np.ndarray, count: int) -> np.ndarray:
    """The first ``count`` samples answer their second-best class."""
    out = values.copy()
    for row in out[:count]:
        best, second = np.argsort(row)[-1], np.argsort(row)[-2]
        row[best], row[second] = row[second], row[best]
    return out


def test_the_worst_path_decides_and_every_failure_names_its_path() -> None:
    reference = {"p": _probabilities()}
    good = _quantized(reference["p"])
    bad = _flip(good, 3)  # 97 of 100 agree: below 99%
    report = compare_paths(
        reference,
        [
            PathOutputs("builtin", "rt builtin", {"p": good}),
            PathOutputs("xnnpack", "rt x", {"p": bad}),
        ],
        None,
        Thresholds(min_agreement=0.99, max_drop=None),
        steps={"p": STEP},
    )
    assert not report.passed
    assert report.path == "xnnpack" and report.runtime == "rt x"
    assert report.top1_agreement == pytest.approx(0.97)
    assert report.failures == [
        "[xnnpack] top-1 agreement 97.00% (97 of 100) < 99.00% (needs 99 of 100)"
    ]
    assert [(p.name, p.verdict) for p in report.paths] == [("builtin", "pass"), ("xnnpack", "fail")]
    assert report.paths[0].top1_agreement == 1.0
    (spread,) = report.spread
    assert spread.top1_differs == 3 and spread.between == ("builtin", "xnnpack")
    assert spread.max_lsb == pytest.approx(spread.max_abs_diff / STEP)
    document = report.to_dict()
    assert document["path"] == "xnnpack" and len(document["paths"]) == 2
    assert document["spread"][0]["top1_differs"] == 3
    assert [p["name"] for p in report.summary()["paths"]] == ["builtin", "xnnpack"]


def test_failures_on_two_paths_are_all_listed() -> None:
    reference = {"p": _probabilities()}
    a, b = _flip(reference["p"], 2), _flip(reference["p"], 5)
    report = compare_paths(
        reference,
        [PathOutputs("a", "", {"p": a}), PathOutputs("b", "", {"p": b})],
        None,
        Thresholds(min_agreement=0.99, max_drop=None),
    )
    assert report.path == "b"  # the lower agreement of two failing paths
    assert [line.split("]")[0] for line in report.failures] == ["[a", "[b"]


def test_one_path_reports_no_prefix_and_no_spread() -> None:
    reference = {"p": _probabilities()}
    report = compare_paths(
        reference,
        [PathOutputs("emulator", "emu", {"p": _flip(reference["p"], 2)})],
        None,
        Thresholds(min_agreement=0.99, max_drop=None),
    )
    assert report.failures[0].startswith("top-1 agreement 98.00%")
    assert report.spread == [] and report.path == "emulator"


def test_spread_in_lsb_of_the_largest_gap_between_any_two_paths() -> None:
    base = np.zeros((4, 10), np.float32)
    one, three = base.copy(), base.copy()
    one[2, 5] = 1 * STEP
    three[2, 5] = -3 * STEP
    (spread,) = path_spread(
        [
            PathOutputs("x", "", {"o": base}),
            PathOutputs("y", "", {"o": one}),
            PathOutputs("z", "", {"o": three}),
        ],
        {"o": STEP},
    )
    assert spread.max_lsb == 4.0 and spread.between == ("y", "z")
    (unquantized,) = path_spread(
        [PathOutputs("x", "", {"o": base}), PathOutputs("y", "", {"o": one})], {}
    )
    assert unquantized.max_lsb is None and unquantized.max_abs_diff == pytest.approx(STEP)


def test_compare_paths_needs_a_path() -> None:
    with pytest.raises(ValueError):
        compare_paths({"p": _probabilities()}, [], None, Thresholds())


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("all", ()),
        ("", ()),
        ("builtin, xnnpack", ("builtin", "xnnpack")),
        (["reference", "reference"], ("reference",)),
    ],
)
def test_paths_option(value: object, expected: tuple[str, ...]) -> None:
    assert parse_paths(value) == expected


def test_paths_option_refuses_a_number() -> None:
    with pytest.raises(ValueError):
        parse_paths(3)


def test_an_unknown_path_is_a_config_error_naming_the_available_ones() -> None:
    from edgepack.api import _host_paths

    with pytest.raises(ConfigError, match=r"available: builtin, xnnpack, reference"):
        _host_paths(BACKENDS["tflite"], ["xnnpak"], native=False)
    assert [p.name for p in _host_paths(BACKENDS["onnx"], ["unoptimized"], native=False)] == [
        "unoptimized"
    ]


def test_targets_lists_each_profiles_paths() -> None:
    from edgepack.api import targets

    table = {info.name: info.paths for info in targets()}
    assert table["tflite"] == ("builtin", "xnnpack", "reference")
    assert table["onnx"] == ("optimized", "unoptimized")
    assert table["coreml"] == ("emulator",)


def test_junit_fails_exactly_what_the_verdict_fails_on_every_path() -> None:
    from edgepack.drift.junit import junit_cases

    reference = {"p": _probabilities()}
    labels = np.argmax(reference["p"], axis=1)
    one_lost = _flip(reference["p"], 1)  # 1 of 100: meets a 1% drop budget in whole samples
    three_lost = _flip(reference["p"], 3)
    report = compare_paths(
        reference,
        [
            PathOutputs("builtin", "", {"p": one_lost}),
            PathOutputs("xnnpack", "", {"p": three_lost}),
        ],
        labels,
        Thresholds(min_agreement=None, max_drop=0.01),
    )
    cases = {c.name: c for c in junit_cases(report)}
    assert cases["top-1 agreement"].skipped == "threshold off"
    failure = cases["accuracy drop"].failure
    assert failure is not None and failure.startswith("[xnnpack] accuracy drop 3.00% (3 of 100)")
    assert "[builtin]" not in failure
    alone = compare_paths(
        reference, [PathOutputs("builtin", "", {"p": one_lost})], labels,
        Thresholds(min_agreement=None, max_drop=0.01),
    )  # fmt: skip
    assert alone.passed and all(c.failure is None for c in junit_cases(alone))
