"""Latency of the Core ML emulator against onnxruntime on the same float model.

Each model is converted from the same Keras source twice: to a Core ML ML program (fp32 and
fp16 compute precision) with coremltools, and to ONNX with tf2onnx. Single-sample predictions
run in alternating blocks (10 calls of the emulator fp32, 10 of the emulator fp16, 10 of
onnxruntime, round after round), so machine noise hits all alike while each engine runs
back to back as in a drift check; the table gives the median call and the emulator/onnxruntime
ratio. onnxruntime runs with one intra-op thread, NumPy's BLAS with its default threads.

    python benchmarks/coreml_emulator.py [--runs 50] [--models digits fer]
        [--json benchmarks/results/coreml_emulator.json]

The real model (fer, a Keras HDF5 mini-Xception) is fetched with ../shared/models/fetch.sh.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

from benchmarks.real_models import REPO, fetch_models
from edgepack.convert.tf_to_coreml import tensorflow_to_coreml
from edgepack.convert.tf_to_onnx import tensorflow_to_onnx
from edgepack.emulators.coreml import CoreMLEmulator
from edgepack.frontends import load_source

BLOCK = 10  # calls of one engine in a row


def model_paths(names: list[str]) -> dict[str, Path]:
    paths = {"digits": REPO / "examples" / "digits" / "digits.keras"}
    if any(name != "digits" for name in names):
        paths.update(fetch_models())
    return {name: paths[name] for name in names}


def measure(name: str, path: Path, runs: int) -> dict:
    import onnxruntime as ort

    source = load_source(path)
    spec = source.inputs[0]
    shape = tuple(int(d) for d in spec.shape[1:])
    sample = np.random.default_rng(0).random((1, *shape)).astype(np.float32)
    emulators = {
        precision: CoreMLEmulator(tensorflow_to_coreml(source, {spec.name: shape}, precision))
        for precision in ("fp32", "fp16")
    }
    with tempfile.TemporaryDirectory() as folder:
        onnx_path = Path(folder) / "model.onnx"
        names, _ = tensorflow_to_onnx(source, {spec.name: sample}, 17, onnx_path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    onnx_input = next(iter(names))
    calls = {
        "emulator fp32": lambda: emulators["fp32"].predict(
            {emulators["fp32"].input_names[0]: sample}
        ),
        "emulator fp16": lambda: emulators["fp16"].predict(
            {emulators["fp16"].input_names[0]: sample}
        ),
        "onnxruntime": lambda: session.run(None, {onnx_input: sample}),
    }
    times: dict[str, list[float]] = {key: [] for key in calls}
    for _ in range(3):  # warm-up
        for call in calls.values():
            call()
    for _ in range(max(runs // BLOCK, 1)):
        for key, call in calls.items():
            for _ in range(BLOCK):
                started = time.perf_counter()
                call()
                times[key].append(time.perf_counter() - started)
    medians = {key: statistics.median(values) for key, values in times.items()}
    return {
        "model": name,
        "input_shape": [1, *shape],
        "runs": runs,
        "median_ms": {key: round(value * 1e3, 3) for key, value in medians.items()},
        "ratio_fp32_to_onnxruntime": round(medians["emulator fp32"] / medians["onnxruntime"], 2),
        "ratio_fp16_to_onnxruntime": round(medians["emulator fp16"] / medians["onnxruntime"], 2),
        "ops": len(emulators["fp32"]._function.steps),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--models", nargs="+", default=["digits", "fer"])
    parser.add_argument(
        "--json", type=Path, default=Path("benchmarks/results/coreml_emulator.json")
    )
    args = parser.parse_args()
    rows = [measure(name, path, args.runs) for name, path in model_paths(args.models).items()]
    print(
        f"{'model':10} {'ops':>4} {'emu fp32 ms':>12} {'emu fp16 ms':>12} {'ort ms':>8} "
        f"{'fp32/ort':>9} {'fp16/ort':>9}"
    )
    for row in rows:
        ms = row["median_ms"]
        print(
            f"{row['model']:10} {row['ops']:4} {ms['emulator fp32']:12.3f} "
            f"{ms['emulator fp16']:12.3f} {ms['onnxruntime']:8.3f} "
            f"{row['ratio_fp32_to_onnxruntime']:9.2f} {row['ratio_fp16_to_onnxruntime']:9.2f}"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"results": rows}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
