"""Helpers of the Core ML emulator op tests: build a MIL program with coremltools' builder,
convert it to an FP32 ML program, run it in :class:`CoreMLEmulator`, and compare with
independent references (NumPy, TensorFlow, onnxruntime).

Conversions take a few milliseconds once ``gc.collect`` (which ``ct.convert`` calls on every
conversion and which walks TensorFlow's large heap) is skipped.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from unittest import mock

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ct = pytest.importorskip("coremltools")

from coremltools.converters.mil import Builder as mb  # noqa: E402
from coremltools.converters.mil.mil import types  # noqa: E402

from edgepack.emulators.coreml import CoreMLEmulator  # noqa: E402

IOS15 = ct.target.iOS15
IOS16 = ct.target.iOS16
IOS17 = ct.target.iOS17
IOS18 = ct.target.iOS18

_SPEC_TYPES = {
    np.dtype(np.float32): types.fp32,
    np.dtype(np.int32): types.int32,
}


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def randn(*shape: int, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    return (rng(seed).standard_normal(shape) * scale).astype(np.float32)


def convert(program: Any, target: Any = IOS17, pass_pipeline: Any = None) -> Any:
    """An FP32 ML program (``MLModel``, not loaded: there is no Core ML runtime on Linux)."""
    options = {} if pass_pipeline is None else {"pass_pipeline": pass_pipeline}
    with mock.patch("gc.collect"):
        return ct.convert(
            program,
            convert_to="mlprogram",
            compute_precision=ct.precision.FLOAT32,
            minimum_deployment_target=target,
            skip_model_load=True,
            **options,
        )


def program_op_types(mlmodel: Any) -> list[str]:
    """The op types of the converted ``main`` function, in order."""
    function = mlmodel.get_spec().mlProgram.functions["main"]
    block = function.block_specializations[function.opset]
    return [op.type for op in block.operations]


def build(
    body: Callable[..., Any],
    inputs: Sequence[np.ndarray],
    target: Any = IOS17,
) -> Any:
    """``body(x, y, ...)`` (named positional parameters, one per input) as a MIL program."""
    specs = [
        mb.TensorSpec(shape=np.shape(array), dtype=_SPEC_TYPES[np.asarray(array).dtype])
        for array in inputs
    ]
    return mb.program(input_specs=specs, opset_version=target)(body)


def run(
    body: Callable[..., Any],
    inputs: Sequence[np.ndarray],
    target: Any = IOS17,
    expect_ops: Sequence[str] = (),
    pass_pipeline: Any = None,
) -> list[np.ndarray]:
    """Build, convert and run ``body`` in the emulator; outputs in the program's order.

    ``expect_ops``: op types that must survive conversion (so the test exercises their
    kernel and not a rewrite of the graph passes).
    """
    mlmodel = convert(build(body, inputs, target), target, pass_pipeline)
    present = program_op_types(mlmodel)
    missing = [op for op in expect_ops if op not in present]
    assert not missing, f"{missing} not in the converted program {present}"
    emulator = CoreMLEmulator(mlmodel)
    feeds = dict(zip(emulator.input_names, inputs, strict=True))
    outputs = emulator.predict(feeds)
    return [np.asarray(outputs[name]) for name in emulator.output_names]


def run1(
    body: Callable[..., Any],
    inputs: Sequence[np.ndarray],
    target: Any = IOS17,
    expect_ops: Sequence[str] = (),
    pass_pipeline: Any = None,
) -> np.ndarray:
    """:func:`run` of a single-output program."""
    outputs = run(body, inputs, target, expect_ops, pass_pipeline)
    assert len(outputs) == 1
    return outputs[0]


def assert_close(actual: Any, expected: Any, rtol: float) -> None:
    """Elementwise ``|actual - expected| <= rtol * max(|expected|, max|expected|)``: a relative
    tolerance that does not blow up at the zero crossings of a tensor (float32 round-off of a
    sum scales with the magnitude of its terms, not of its result). Shapes must match."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    np.testing.assert_allclose(
        actual.astype(np.float64), expected.astype(np.float64), rtol=rtol, atol=rtol * scale
    )


def ort_run(
    op_type: str,
    inputs: Mapping[str, np.ndarray],
    attributes: Mapping[str, Any] | None = None,
    initializers: Mapping[str, np.ndarray] | None = None,
    input_order: Sequence[str] | None = None,
    opset: int = 19,
) -> np.ndarray:
    """One ONNX node run by onnxruntime: the reference for conv/pool style ops.

    ``inputs`` are fed at run time, ``initializers`` are constants; ``input_order`` is the
    node's input list (names from either, "" for an omitted optional input).
    """
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    initializers = dict(initializers or {})
    order = list(input_order) if input_order is not None else [*inputs, *initializers]
    node = helper.make_node(op_type, order, ["y"], **dict(attributes or {}))
    graph = helper.make_graph(
        [node],
        "g",
        [
            helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(value.dtype), value.shape
            )
            for name, value in inputs.items()
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(value, name) for name, value in initializers.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return session.run(["y"], dict(inputs))[0]
