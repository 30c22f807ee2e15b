"""ONNX int8 drift by CPU instruction set: AVX-512 VNNI vs AVX2 without VNNI, with and without
``reduce_range``, fused (all graph optimizations) vs unfused (none).

onnxruntime's fused u8 x s8 kernels on x86 without VNNI sum pairs of products in 16 bits and can
saturate. This host may have VNNI; an AVX2-only CPU is emulated with qemu-user
(``apt-get install qemu-user``), whose CPUID reports no AVX-512 and no VNNI for ``-cpu
EPYC-Rome`` (NumPy's and onnxruntime's run-time dispatch both see that CPU).

    python benchmarks/isa_drift.py prepare [--models digits fer] [--samples 200]
    python benchmarks/isa_drift.py measure                      # this host
    qemu-x86_64 -cpu EPYC-Rome "$(which python)" benchmarks/isa_drift.py measure
    python benchmarks/isa_drift.py table                        # both, side by side

``prepare`` builds the bundles and stores the float model's outputs (TensorFlow never runs under
the emulator); ``measure`` runs only onnxruntime and appends its figures to the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "benchmarks/results/isa_drift"
VARIANTS = {  # name -> (profile, settings)
    "onnx": ("onnx", {}),
    "onnx-x86": ("onnx-x86", {}),
    "onnx-x86+reduce_range": ("onnx-x86", {"reduce_range": True}),
}


def prepare(names: list[str], samples: int) -> None:
    from benchmarks.execution_paths import models
    from edgepack import api
    from edgepack.calib.dataset import open_sample_set
    from edgepack.frontends import load_source

    WORK.mkdir(parents=True, exist_ok=True)
    for name, model, calib in models(names):
        source = load_source(model)
        data = open_sample_set(calib)
        bound = data.bind(source.inputs)
        feeds = bound.load(data.take(samples, 0))
        reference = source.run(feeds)
        np.savez(WORK / f"{name}.npz", **{f"in:{k}": v for k, v in feeds.items()},
                 **{f"out:{k}": v for k, v in reference.items()})  # fmt: skip
        bundles = {}
        for variant, (profile, settings) in VARIANTS.items():
            with tempfile.TemporaryDirectory() as config_dir:
                table = "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items())
                Path(config_dir, "edgepack.toml").write_text(
                    f"[targets.{profile}.settings]\n{table}" if table else ""
                )
                (built,) = api.build(
                    model, [profile], calib, out=WORK / variant, num_calib=40, force=True,
                    min_agreement="off", max_drop="off", allow_collapse=True,
                    cwd=config_dir, environ={},
                )  # fmt: skip
            print(f"{name} {variant}: {built.bundle}")
            bundles[variant] = str(built.bundle)
        (WORK / f"{name}.json").write_text(json.dumps(bundles, indent=2) + "\n")


def measure() -> None:
    import onnxruntime as ort

    from edgepack.drift.metrics import sqnr_db, top1
    from edgepack.hostcpu import int8_instruction_set

    host = int8_instruction_set()
    results = []
    for stored in sorted(WORK.glob("*.npz")):
        name = stored.stem
        arrays = np.load(stored)
        bundles = json.loads((WORK / f"{name}.json").read_text())
        for variant in VARIANTS:
            bundle = Path(bundles[variant])
            manifest = json.loads((bundle / "manifest.json").read_text())
            feeds = {i["name"]: arrays[f"in:{i['source_name']}"] for i in manifest["inputs"]}
            outputs = manifest["outputs"]
            for level in ("optimized", "unoptimized"):
                options = ort.SessionOptions()
                if level == "unoptimized":
                    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
                session = ort.InferenceSession(
                    str(bundle / "model.onnx"), options, providers=["CPUExecutionProvider"]
                )
                values = session.run([o["name"] for o in outputs], feeds)
                for info, value in zip(outputs, values, strict=True):
                    reference = arrays[f"out:{info['source_name']}"]
                    agree = None
                    if reference.ndim == 2 and reference.shape[1] > 1:
                        agree = float(np.mean(top1(reference) == top1(value)))
                    results.append({
                        "host": host, "model": name, "variant": variant, "path": level,
                        "output": info["source_name"], "samples": len(reference),
                        "sqnr_db": round(sqnr_db(reference, value), 2), "top1_agreement": agree,
                    })  # fmt: skip
    store = WORK / "results.json"
    previous = json.loads(store.read_text()) if store.exists() else []
    kept = [r for r in previous if r["host"] != host]
    store.write_text(json.dumps(kept + results, indent=2) + "\n")
    print(f"{host}: {len(results)} figures -> {store}")


def table() -> None:
    rows = json.loads((WORK / "results.json").read_text())
    hosts = sorted({r["host"] for r in rows})
    keys = sorted({(r["model"], r["variant"], r["path"], r["output"]) for r in rows})
    print(f"{'model':8} {'variant':22} {'path':12} " + " ".join(f"{h[:26]:>26}" for h in hosts))
    for key in keys:
        cells = []
        for host in hosts:
            found = [r for r in rows if (r["model"], r["variant"], r["path"], r["output"]) == key
                     and r["host"] == host]  # fmt: skip
            if not found:
                cells.append(f"{'-':>26}")
                continue
            r = found[0]
            agree = "" if r["top1_agreement"] is None else f", {r['top1_agreement']:.3f}"
            text = f"{r['sqnr_db']:.2f} dB{agree}"
            cells.append(f"{text:>26}")
        print(f"{key[0]:8} {key[1]:22} {key[2]:12} " + " ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["prepare", "measure", "table"])
    parser.add_argument("--models", nargs="+", default=["digits", "fer"])
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    if args.step == "prepare":
        prepare(args.models, args.samples)
    elif args.step == "measure":
        measure()
    else:
        table()


if __name__ == "__main__":
    main()
