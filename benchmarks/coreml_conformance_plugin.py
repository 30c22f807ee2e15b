"""pytest plugin: coremltools' own op tests, with ``MLModel.predict`` served by edgepack's emulator.

coremltools ships its op tests inside the wheel (``coremltools/converters/mil/mil/ops/tests/``).
They build a program with the MIL builder, convert it, call ``MLModel.predict`` (on macOS) and
compare with expected values written by Apple's engineers. This plugin makes coremltools take
its macOS branch (``_IS_MACOS`` and the macOS version read as macOS 15) and answers ``predict``
with :class:`edgepack.emulators.coreml.CoreMLEmulator`. Loaded by
``benchmarks/coreml_conformance.py`` (``-p benchmarks.coreml_conformance_plugin``); it records,
per test, whether it reached ``predict`` and how it ended, into the JSON file named by the
``EDGEPACK_CONFORMANCE_OUT`` environment variable (one file per xdist worker: the worker's id
is appended). ``EDGEPACK_CONFORMANCE_SAMPLE`` (a percentage, default 100) keeps a deterministic
share of each test file: the tests whose node id hashes below it.

A test of an fp16-typed program held to fp32 tolerance (see :func:`fp16_typed`) that fails on
its values is run a second time, from the same random state, with the emulator's fp16 rounding
between ops switched off (each op computed in fp32 from the program's fp16 constants and
inputs); the record says whether that passed (``exact_passed``). The driver uses it to tell the
emulator's rounding apart from expected values that no fp16 program can reach.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

MACOS_VERSION = (15, 0)
_current: dict[str, str] = {}
_reached: set[str] = set()
_results: dict[str, dict[str, Any]] = {}
_exact: dict[str, bool] = {}
_mismatches: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # a failed comparison's arrays
FP16_MAX = 65504.0
FP16_MARK = re.compile(r"numpy\.float16|(?<=dtype=)fp16")


def pytest_configure(config: pytest.Config) -> None:
    """Patch coremltools before any test module is imported (their parametrization reads
    ``_IS_MACOS`` at import time). With ``EDGEPACK_CONFORMANCE_RUNTIME=0`` nothing is patched:
    coremltools takes its Linux path, where no test calls ``predict`` (the driver reruns
    failures so, to tell a converter's failure from a runtime's)."""
    _skip_conversion_gc()
    if os.environ.get("EDGEPACK_CONFORMANCE_RUNTIME", "1") == "0":
        return
    import coremltools._deps as deps
    import coremltools.models.utils as model_utils

    deps._IS_MACOS = True
    model_utils._is_macos = lambda: True
    model_utils._macos_version = lambda: MACOS_VERSION
    from coremltools.converters.mil import testing_utils

    testing_utils._IS_MACOS = True
    from coremltools.models import MLModel

    MLModel.predict = _emulated_predict
    MLModel.make_state = _emulated_make_state
    np.testing.assert_allclose = _recording(np.testing.assert_allclose)


def _recording(compare: Any) -> Any:
    """``np.testing.assert_allclose`` that keeps the arrays of a failed comparison."""

    def assert_allclose(actual: Any, desired: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return compare(actual, desired, *args, **kwargs)
        except AssertionError:
            if "nodeid" in _current:
                _mismatches[_current["nodeid"]] = (np.asarray(actual), np.asarray(desired))
            raise

    return assert_allclose


def beyond_fp16(nodeid: str) -> bool:
    """A failure of an fp16 run (``precision='fp16'``) whose only mismatches are expected
    values past fp16's largest number (65504), where the program's output is inf: values no
    fp16 program can hold."""
    if "precision='fp16'" not in nodeid or nodeid not in _mismatches:
        return False
    actual, desired = (a.astype(np.float64) for a in _mismatches[nodeid])
    if actual.shape != desired.shape:
        return False
    overflow = np.isinf(actual) & np.isfinite(desired)
    if not overflow.any() or not np.all(np.abs(desired[overflow]) > FP16_MAX):
        return False
    rest = ~overflow
    return bool(np.all(np.isclose(actual[rest], desired[rest], rtol=5e-2, atol=0.5)))


def _skip_conversion_gc() -> None:
    """``ct.convert`` calls ``gc.collect()`` on every conversion, which walks TensorFlow's
    large heap: most of a test's time. The tests convert thousands of tiny programs; skipping
    it changes no result."""
    import types

    from coremltools.converters import _converters_entry

    _converters_entry.gc = types.SimpleNamespace(collect=lambda *args: 0)  # type: ignore[attr-defined]


def _emulated_make_state(self: Any) -> Any:
    from edgepack.emulators.coreml import CoreMLEmulator

    return CoreMLEmulator(self).make_state()


def _emulated_predict(self: Any, data: Any, state: Any = None, **_: Any) -> Any:
    """``MLModel.predict``: a dictionary of inputs, or a list of them (batch prediction)."""
    from edgepack.emulators.coreml import CoreMLEmulator

    if "nodeid" in _current:
        _reached.add(_current["nodeid"])
    emulator = CoreMLEmulator(self)
    try:
        if isinstance(data, list):
            return [emulator.predict(item, state=state) for item in data]
        return emulator.predict(data, state=state)
    except RuntimeError as exc:  # the interpreter's "op ... failed: ..." at run time
        # what Core ML's MLModel.predict raises when the program fails on its inputs
        raise RuntimeError(f"Unable to compute the prediction using ML Program: {exc}") from exc


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    share = float(os.environ.get("EDGEPACK_CONFORMANCE_SAMPLE", "100"))
    if share >= 100:
        return
    kept = [item for item in items if in_sample(item.nodeid, share)]
    config.hook.pytest_deselected(items=[i for i in items if i not in kept])
    items[:] = kept


def in_sample(nodeid: str, share: float) -> bool:
    """The same tests for the same share on every host and run (a hash, not a random draw);
    stratified because every file keeps about ``share`` percent of its own tests."""
    digest = hashlib.sha256(nodeid.encode()).digest()
    return int.from_bytes(digest[:4], "big") % 10000 < share * 100


def pytest_runtest_setup(item: pytest.Item) -> None:
    _current["nodeid"] = item.nodeid


def fp16_typed(nodeid: str) -> bool:
    """A test of a program with fp16 inputs, weights or lookup tables, compared under
    coremltools' fp32 tolerance (``precision='fp32'``: 1e-4 absolute, 1e-5 relative)."""
    return "precision='fp32'" in nodeid and bool(FP16_MARK.search(nodeid))


def fp32_twin(nodeid: str) -> str:
    """The same test with every fp16 dtype parameter made fp32."""
    return FP16_MARK.sub(lambda m: "numpy.float32" if "numpy" in m.group() else "fp32", nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    states = _random_states()
    outcome = yield
    error = outcome.excinfo[1] if outcome.excinfo else None
    if not fp16_typed(item.nodeid) or not _is_tolerance_failure(error):
        return
    _restore_random_states(states)
    from edgepack.emulators.coreml import interpreter

    rounding = interpreter.fp16_values
    interpreter.fp16_values = lambda array: np.asarray(array, dtype=np.float32)
    try:
        item.runtest()
        _exact[item.nodeid] = True
    except Exception:
        _exact[item.nodeid] = False
    finally:
        interpreter.fp16_values = rounding


def _is_tolerance_failure(error: BaseException | None) -> bool:
    return isinstance(error, AssertionError) and "Not equal to tolerance" in str(error)


def _random_states() -> tuple[Any, ...]:
    import random

    import torch

    return random.getstate(), np.random.get_state(), torch.get_rng_state()


def _restore_random_states(states: tuple[Any, ...]) -> None:
    import random

    import torch

    random.setstate(states[0])
    np.random.set_state(states[1])
    torch.set_rng_state(states[2])


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or (report.when == "setup" and not report.passed):
        _results[report.nodeid] = {
            "outcome": report.outcome,
            "reached_predict": report.nodeid in _reached,
            "kind": classify(report) if report.failed else None,
            "message": _message(report) if report.failed else None,
            "exact_passed": _exact.get(report.nodeid),
        }


def pytest_sessionfinish(session: pytest.Session) -> None:
    target = os.environ.get("EDGEPACK_CONFORMANCE_OUT")
    if target:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        Path(f"{target}.{worker}").write_text(json.dumps(_results, indent=1, sort_keys=True))


UNSUPPORTED = re.compile(r"does not support op\(s\): ([\w, ]+)")


NEURAL_NETWORK = "a 'neuralNetwork' model"


def classify(report: pytest.TestReport) -> str:
    """``no kernel``, ``numerics`` (``fp16 range`` when :func:`beyond_fp16`), ``shapes`` or
    ``harness`` for a failed test, or ``neuralnetwork`` for a test of the old model type, which
    the emulator refuses by design (it runs ML programs only)."""
    text = str(report.longrepr)
    if NEURAL_NETWORK in text:
        return "neuralnetwork"
    if UNSUPPORTED.search(text):
        return "no kernel"
    if "Not equal to tolerance" in text or "Mismatched elements" in text:
        return "fp16 range" if beyond_fp16(report.nodeid) else "numerics"
    if "shape" in text.lower() and ("mismatch" in text.lower() or "AssertionError" in text):
        return "shapes"
    return "harness"


def _message(report: pytest.TestReport) -> str:
    text = str(report.longrepr)
    found = UNSUPPORTED.search(text)
    if found:
        return f"no kernel: {found.group(1).strip()}"
    lines = [line for line in text.splitlines() if line.startswith("E ")]
    return " ".join(" ".join(lines[:3]).split())[:300]
