"""Entropy calibration's threshold search: onnxruntime's ``get_entropy_threshold`` beside
edgepack's NumPy reproduction (``edgepack.backends.onnx.entropy_threshold``), on histograms
onnxruntime's own collector builds (2048 bins, 128 quantized bins, as edgepack calibrates).

Both run interleaved, round-robin on the same histograms, so that machine noise hits them
alike; the table gives medians per histogram, the ratio, and whether the thresholds are equal.

    python benchmarks/entropy_threshold.py [--runs 5] [--json FILE]

(default FILE: benchmarks/results/entropy_threshold.json)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import statistics
import time
from importlib import metadata
from pathlib import Path

import numpy as np

from edgepack.backends.onnx import ENTROPY_BINS, ENTROPY_QUANTIZED_BINS, entropy_threshold


def histograms() -> dict[str, tuple]:
    """Activations of the kinds a CNN has, collected by onnxruntime's HistogramCollector."""
    from onnxruntime.quantization.calibrate import HistogramCollector

    rng = np.random.default_rng(0)
    shapes = (64, 1024)
    data = {
        "normal": rng.normal(0, 1, shapes),
        "relu": np.maximum(rng.normal(0.2, 1, shapes), 0),
        "heavy tail": rng.standard_t(3, shapes),
        "outliers": np.concatenate([rng.gamma(2, 0.5, (64, 1000)), rng.normal(0, 40, (64, 24))], 1),
    }
    found = {}
    for name, values in data.items():
        collector = HistogramCollector(
            method="entropy", symmetric=False, num_bins=ENTROPY_BINS,
            num_quantized_bins=ENTROPY_QUANTIZED_BINS, percentile=99.999, scenario="same",
        )  # fmt: skip
        with contextlib.redirect_stdout(io.StringIO()):
            collector.collect({name: [values.astype(np.float32)]})
        found[name] = (collector, collector.histogram_dict[name])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--json", type=Path, default=Path("benchmarks/results/entropy_threshold.json")
    )
    args = parser.parse_args()
    rows = []
    print(f"{'histogram':12} {'onnxruntime s':>14} {'edgepack s':>11} {'ratio':>6} {'equal':>6}")
    for name, (collector, histogram) in histograms().items():
        reference, ours = [], []
        for _ in range(args.runs):
            started = time.perf_counter()
            expected = collector.get_entropy_threshold(histogram, ENTROPY_QUANTIZED_BINS)
            reference.append(time.perf_counter() - started)
            started = time.perf_counter()
            got = entropy_threshold(histogram, ENTROPY_QUANTIZED_BINS)
            ours.append(time.perf_counter() - started)
        equal = (got[0], got[1]) == (expected[0], expected[1])
        row = {
            "histogram": name,
            "onnxruntime_median_s": statistics.median(reference),
            "edgepack_median_s": statistics.median(ours),
            "ratio": statistics.median(reference) / statistics.median(ours),
            "equal_thresholds": bool(equal),
            "runs": args.runs,
        }
        rows.append(row)
        print(
            f"{name:12} {row['onnxruntime_median_s']:14.3f} {row['edgepack_median_s']:11.3f} "
            f"{row['ratio']:6.1f} {equal!s:>6}"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "benchmark": "entropy_threshold",
                "python": platform.python_version(),
                "onnxruntime": metadata.version("onnxruntime"),
                "machine": platform.machine(),
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
