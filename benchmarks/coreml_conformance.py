"""The Core ML emulator measured against the op tests Apple ships inside the coremltools wheel.

Runs ``coremltools/converters/mil/mil/ops/tests/iOS14`` to ``iOS18`` with ``MLModel.predict``
served by edgepack's emulator (``benchmarks/coreml_conformance_plugin.py``), as the ONNX
reference evaluator is measured against the ONNX backend tests. Only tests that reach
``predict`` count: the others test the builder or the converter, not a runtime; so do not the
tests of the old ``neuralnetwork`` model type, which the emulator refuses by design. Failures are
classified: ``no kernel`` (an op the emulator has no kernel for), ``numerics`` (values outside
the test's tolerance), ``shapes``, ``harness`` (anything else).

Some failures are listed apart, with their reason, and not counted in the pass rate (the raw
rate is printed too):

- ``converter``: the test fails on coremltools' Linux path as well, where nothing is predicted
  (an assertion about the converted program, such as its number of ``cast`` ops); it is rerun
  so to be put there.
- ``apple literal``: a value typed into a test that two independent implementations miss by
  more than its tolerance (``APPLE_LITERALS`` gives each one and its evidence).
- ``fp16 range``: an fp16 run whose only mismatches are expected values past fp16's largest
  number (65504) where the program's output overflowed to inf (the plugin keeps the arrays of
  the failed comparison to check this).
- ``fp16 reference``: a test of an fp16-typed program held to fp32 tolerance whose expected values
come from the fp32 originals of its fp16 weights and inputs (or are themselves rounded to fp16
where the program computes in fp32). A failure is put there only when (1) it still fails with
the emulator's fp16 rounding between ops switched off, so the rounding model is not the cause,
and (2) its fp32 twin, the same test with fp32 dtypes, passes, so the kernels are right on
those very parameters; the twins not in the sample are run for this.

Prints a per-file table and writes JSON::

    python benchmarks/coreml_conformance.py [--sample 10] [--workers 2]
        [--files iOS17/test_activation.py ...] [--json benchmarks/results/coreml-conformance.json]

``--sample`` keeps a deterministic share of every file (a hash of the test id: the same tests
on every host), 100 for the whole set.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import coreml_conformance_plugin as plugin  # noqa: E402

OPSETS = ("iOS14", "iOS15", "iOS16", "iOS17", "iOS18")
KINDS = (
    "no kernel",
    "numerics",
    "shapes",
    "harness",
    "converter",
    "apple literal",
    "fp16 reference",
    "fp16 range",
)
LISTED = ("converter", "apple literal", "fp16 reference", "fp16 range")  # not in the pass rate
# Tests (node id prefixes) whose expected values hold a literal no implementation reaches.
APPLE_LITERALS = {
    "iOS16/test_image_resizing.py::TestCropResize::test_builder_to_backend_ios16": (
        "expects 7.899 where the box samples rows 1-2 at column 0.9: (5.9 + 9.9) / 2 = 7.9, as "
        "TensorFlow's crop_and_resize gives (tests/unit/coreml/test_scatter_and_window_ops.py)"
    ),
    "iOS17/test_image_resizing.py::TestCropResize::test_builder_to_backend_ios17": (
        "the same 7.899 as the iOS16 test"
    ),
    "iOS14/test_normalization.py::TestNormalizationLocalResponseNorm::"
    "test_builder_to_backend_smoke": (
        "its values normalise each element by its own square only, as if the window held one "
        "channel; PyTorch's LocalResponseNorm, the reference of the same op's stress tests "
        "(which pass), sums the neighbouring channels (tests/unit/coreml/"
        "test_scatter_and_window_ops.py)"
    ),
}


def tests_folder() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("coremltools")
    if spec is None or spec.origin is None:
        raise SystemExit("coremltools is not installed")
    return Path(spec.origin).parent / "converters" / "mil" / "mil" / "ops" / "tests"


def test_files(chosen: list[str] | None) -> list[Path]:
    root = tests_folder()
    files = sorted(path for opset in OPSETS for path in (root / opset).glob("test_*.py"))
    if chosen:
        wanted = set(chosen)
        files = [f for f in files if f"{f.parent.name}/{f.name}" in wanted]
    return files


def run(files: list[Path], sample: float, workers: int) -> dict[str, dict[str, Any]]:
    """Every selected test's record (outcome, reached_predict, kind, message), by node id;
    fp16 failures that meet the conditions of ``fp16 reference`` are reclassified."""
    results = run_pytest([str(f) for f in files], sample, workers)
    candidates = [
        nodeid
        for nodeid, record in results.items()
        if record["kind"] == "numerics" and record.get("exact_passed") is False
    ]
    twins = {nodeid: plugin.fp32_twin(nodeid) for nodeid in candidates}
    unsampled = sorted({twin for twin in twins.values() if twin not in results})
    twin_results = dict(results)
    if unsampled:
        root = tests_folder()
        twin_results.update(run_pytest([str(root / t) for t in unsampled], 100.0, workers))
    for nodeid, twin in twins.items():
        if twin_results.get(twin, {}).get("outcome") == "passed":
            results[nodeid]["kind"] = "fp16 reference"
    list_apple_literals(results)
    list_converter_failures(results, workers)
    return results


def list_apple_literals(results: dict[str, dict[str, Any]]) -> None:
    for nodeid, record in results.items():
        if record["kind"] == "numerics" and any(map(nodeid.startswith, APPLE_LITERALS)):
            record["kind"] = "apple literal"


def list_converter_failures(results: dict[str, dict[str, Any]], workers: int) -> None:
    """Failures that recur on coremltools' Linux path (no ``predict``) become ``converter``."""
    failed = sorted(
        nodeid
        for nodeid, record in results.items()
        if record["kind"] in ("numerics", "shapes", "harness")
    )
    if not failed:
        return
    root = tests_folder()
    rerun = run_pytest([str(root / n) for n in failed], 100.0, workers, runtime=False)
    for nodeid in failed:
        if rerun.get(nodeid, {}).get("outcome") == "failed":
            results[nodeid]["kind"] = "converter"


def run_pytest(
    targets: list[str], sample: float, workers: int, runtime: bool = True
) -> dict[str, dict[str, Any]]:
    """The plugin's records of one pytest run over ``targets`` (files or node ids); without
    ``runtime``, on coremltools' Linux path, where nothing is predicted."""
    with tempfile.TemporaryDirectory(prefix="edgepack-conformance-") as scratch:
        out = Path(scratch) / "results.json"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")},
            "EDGEPACK_CONFORMANCE_OUT": str(out),
            "EDGEPACK_CONFORMANCE_SAMPLE": str(sample),
            "EDGEPACK_CONFORMANCE_RUNTIME": "1" if runtime else "0",
            # every conversion leaves a temporary .mlpackage behind: keep them in the scratch
            # folder, which goes at the end
            "TMPDIR": scratch,
            "TF_CPP_MIN_LOG_LEVEL": "3",
            # coremltools' own switches: ML programs only (the emulator runs no other model
            # type), in fp32 as well as fp16
            "PYMIL_TEST_TARGETS": "mlprogram",
            "INCLUDE_MIL_FP32_UNIT_TESTS": "1",
        }
        command = [
            sys.executable, "-m", "pytest", "-q", "-p", "benchmarks.coreml_conformance_plugin",
            "-p", "no:cacheprovider", "-o", "addopts=", "--rootdir", str(tests_folder()),
            "-W", "ignore", *(["-n", str(workers)] if workers > 1 else []),
            *targets,
        ]  # fmt: skip
        subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
        results: dict[str, dict[str, Any]] = {}
        # with xdist the controller writes its own copy, without the workers' predict calls:
        # the workers' records (results.json.gw*) come last and win
        parts = sorted(Path(scratch).glob("results.json.*"), key=lambda p: p.suffix != ".main")
        for part in parts:
            results.update(json.loads(part.read_text()))
    return results


def file_of(nodeid: str) -> str:
    """``iOS17/test_activation.py`` from a node id."""
    path = nodeid.split("::", 1)[0]
    parts = Path(path).parts
    return "/".join(parts[-2:])


def summarise(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per-file and overall counts of the predict-reaching tests."""
    per_file: dict[str, Counter[str]] = defaultdict(Counter)
    missing: Counter[str] = Counter()
    neural_network = 0
    for nodeid, record in results.items():
        if not record["reached_predict"]:
            continue
        if record["kind"] == "neuralnetwork":  # the old model type: refused by design
            neural_network += 1
            continue
        counts = per_file[file_of(nodeid)]
        counts["tests"] += 1
        if record["outcome"] == "passed":
            counts["passed"] += 1
        elif record["outcome"] == "failed":
            counts[record["kind"]] += 1
            if record["kind"] == "no kernel":
                for op in record["message"].removeprefix("no kernel: ").split(", "):
                    missing[op] += 1
        else:
            counts["skipped"] += 1
    files = {name: _file_summary(c) for name, c in sorted(per_file.items())}
    judged = sum(f["tests"] - f["skipped"] for f in files.values())
    listed = sum(f["listed"] for f in files.values())
    passed = sum(f["passed"] for f in files.values())
    rates = [f["pass_rate"] for f in files.values() if f["pass_rate"] is not None]
    return {
        "tests": len(results),
        "neuralnetwork_tests": neural_network,
        "predict_reaching": judged,
        "listed": listed,
        "passed": passed,
        "pass_rate": passed / (judged - listed) if judged > listed else None,
        "raw_pass_rate": passed / judged if judged else None,
        "lowest_file_rate": min(rates) if rates else None,
        "failures": {kind: sum(f[kind] for f in files.values()) for kind in KINDS},
        "missing_kernels": dict(missing.most_common()),
        "files": files,
    }


def _file_summary(c: Counter[str]) -> dict[str, Any]:
    judged = c["tests"] - c["skipped"]
    listed = sum(c[kind] for kind in LISTED)
    return {
        "tests": c["tests"],
        "passed": c["passed"],
        "skipped": c["skipped"],
        "listed": listed,
        **{kind: c[kind] for kind in KINDS},
        "pass_rate": c["passed"] / (judged - listed) if judged > listed else None,
        "raw_pass_rate": c["passed"] / judged if judged else None,
    }


def print_table(summary: dict[str, Any]) -> None:
    def percent(rate: float | None) -> str:
        return "-" if rate is None else f"{rate:.1%}"

    print(f"{'file':42} {'tests':>6} {'passed':>7} {'rate':>7} {'raw':>7}  " + "  ".join(KINDS))
    for name, f in summary["files"].items():
        kinds = "  ".join(f"{f[k]:>{len(k)}}" for k in KINDS)
        print(
            f"{name:42} {f['tests']:>6} {f['passed']:>7} {percent(f['pass_rate']):>7} "
            f"{percent(f['raw_pass_rate']):>7}  {kinds}"
        )
    print(
        f"{'all':42} {summary['predict_reaching']:>6} {summary['passed']:>7} "
        f"{percent(summary['pass_rate']):>7} {percent(summary['raw_pass_rate']):>7}  "
        f"(of {summary['tests']} tests run; {summary['neuralnetwork_tests']} neuralnetwork-model "
        f"tests not counted; rate leaves out the {summary['listed']} listed: "
        + ", ".join(LISTED)
        + ")"
    )
    if summary["missing_kernels"]:
        print(
            "ops without a kernel:",
            ", ".join(f"{k} ({v})" for k, v in summary["missing_kernels"].items()),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=float, default=100.0, help="percent of every file")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--files", nargs="*", help="e.g. iOS17/test_activation.py")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    started = time.perf_counter()
    results = run(test_files(args.files), args.sample, args.workers)
    summary = summarise(results)
    summary["sample_percent"] = args.sample
    summary["seconds"] = round(time.perf_counter() - started, 1)
    print_table(summary)
    print(f"{summary['seconds']} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": summary, "results": results}, indent=1))


if __name__ == "__main__":
    main()
