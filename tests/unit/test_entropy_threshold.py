"""edgepack's entropy-calibration threshold search equals onnxruntime's exactly, on
histograms onnxruntime's own collector builds (2048 bins, 128 quantized bins, as edgepack
calibrates)."""

from __future__ import annotations

import numpy as np
import pytest

from edgepack.backends.onnx import ENTROPY_BINS, ENTROPY_QUANTIZED_BINS, entropy_threshold


def collected(batches: list[np.ndarray]) -> tuple:
    from onnxruntime.quantization.calibrate import HistogramCollector

    collector = HistogramCollector(
        method="entropy", symmetric=False, num_bins=ENTROPY_BINS,
        num_quantized_bins=ENTROPY_QUANTIZED_BINS, percentile=99.999, scenario="same",
    )  # fmt: skip
    collector.collect({"t": batches})
    return collector, collector.histogram_dict["t"]


@pytest.mark.parametrize(
    "kind", ["normal", "relu", "skewed-with-outliers", "sparse", "constant-half"]
)
def test_thresholds_equal_onnxruntimes(kind: str) -> None:
    rng = np.random.default_rng(7)
    data = {
        "normal": lambda: rng.normal(0, 1, (64, 256)),
        "relu": lambda: np.maximum(rng.normal(0.2, 1, (64, 256)), 0),
        "skewed-with-outliers": lambda: np.concatenate(
            [rng.gamma(2.0, 0.5, (64, 250)), rng.normal(0, 40, (64, 6))], axis=1
        ),
        "sparse": lambda: rng.choice(
            [-3.0, 0.0, 0.5, 7.0], size=(64, 256), p=[0.1, 0.7, 0.15, 0.05]
        ),
        "constant-half": lambda: np.where(
            rng.random((64, 256)) < 0.5, 1.25, rng.normal(0, 1, (64, 256))
        ),
    }[kind]
    batches = [data().astype(np.float32) for _ in range(3)]
    collector, histogram = collected(batches)
    assert histogram[0].dtype.kind == "i"  # counts: integer sums are exact both ways
    expected = collector.get_entropy_threshold(histogram, ENTROPY_QUANTIZED_BINS)
    found = entropy_threshold(histogram, ENTROPY_QUANTIZED_BINS)
    assert (found[0], found[1]) == (expected[0], expected[1])
    assert found[0].dtype == expected[0].dtype and found[1].dtype == expected[1].dtype
