"""ONNX activations rewritten into forms the int8 toolchains quantize well, with the same
results: PyTorch's exact GELU (for TFLite), decomposed HardSwish (for onnxruntime's QDQ),
HardSigmoid (for TFLite's int8 builtins)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgepack.convert.onnx_forms import rewrite_gelu, rewrite_hard_sigmoid, rewrite_hardswish


def constant(name: str, value: float) -> onnx.NodeProto:
    return helper.make_node(
        "Constant", [], [name], value=numpy_helper.from_array(np.array(value, np.float32))
    )


def torch_gelu(path: Path, divisor: float = 1.4142135381698608, extra_reader: bool = False) -> Path:
    """y = Mul(Mul(x, Add(Erf(Div(x, divisor)), 1)), 0.5), as torch.onnx writes nn.GELU()."""
    nodes = [
        constant("root2", divisor),
        constant("one", 1.0),
        constant("half", 0.5),
        helper.make_node("Div", ["x", "root2"], ["scaled"]),
        helper.make_node("Erf", ["scaled"], ["erf"]),
        helper.make_node("Add", ["erf", "one"], ["plus"]),
        helper.make_node("Mul", ["x", "plus"], ["times"]),
        helper.make_node("Mul", ["times", "half"], ["y"]),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])]
    if extra_reader:  # the Erf's output is a graph output too: not a GELU to rewrite
        outputs.append(helper.make_tensor_value_info("erf", TensorProto.FLOAT, ["N", 8]))
    graph = helper.make_graph(
        nodes, "gelu", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])], outputs
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def save_graph(path: Path, nodes: list, outputs: tuple[str, ...] = ("y",), opset: int = 13) -> Path:
    """A graph of ``nodes`` from ``x [N, 8]`` to ``outputs``."""
    graph = helper.make_graph(
        nodes,
        "forms",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, ["N", 8]) for o in outputs],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def paddle_hardswish(path: Path, divide: bool = True, outputs: tuple[str, ...] = ("y",)) -> Path:
    """y = Div(Mul(x, Clip(Add(x, 3), 0, 6)), 6), as Paddle2ONNX writes HardSwish (or the
    last step as Mul by 1/6); the Clip's bounds are inputs (opset 11+)."""
    nodes = [
        constant("three", 3.0),
        constant("zero", 0.0),
        constant("six", 6.0),
        constant("sixth", 1 / 6),
        helper.make_node("Add", ["x", "three"], ["shifted"]),
        helper.make_node("Clip", ["shifted", "zero", "six"], ["clipped"]),
        helper.make_node("Mul", ["clipped", "x"], ["product"]),  # either operand order
        helper.make_node("Div", ["product", "six"], ["y"])
        if divide
        else helper.make_node("Mul", ["product", "sixth"], ["y"]),
    ]
    return save_graph(path, nodes, outputs)


def run(path: Path, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(str(path)).run(["y"], {"x": x})[0]


def test_gelu_is_rewritten_with_the_same_results(tmp_path: Path) -> None:
    model = torch_gelu(tmp_path / "gelu.onnx")
    x = np.linspace(-6, 6, 64, dtype=np.float32).reshape(8, 8)
    before = run(model, x)
    assert rewrite_gelu(model) == 1
    onnx.checker.check_model(str(model))
    np.testing.assert_allclose(run(model, x), before, rtol=1e-6, atol=1e-7)
    ops = [n.op_type for n in onnx.load(str(model)).graph.node if n.op_type != "Constant"]
    assert ops == ["Mul", "Mul", "Erf", "Add", "Mul"]  # 0.5 * x first, x * 0.7071 into Erf


def test_other_erf_uses_are_left_alone(tmp_path: Path) -> None:
    assert rewrite_gelu(torch_gelu(tmp_path / "a.onnx", divisor=2.0)) == 0
    assert rewrite_gelu(torch_gelu(tmp_path / "b.onnx", extra_reader=True)) == 0


def test_a_hardswish_whose_product_is_read_elsewhere_is_left_alone(tmp_path: Path) -> None:
    model = paddle_hardswish(tmp_path / "kept.onnx", outputs=("y", "product"))
    assert rewrite_hardswish(model) == 0


@pytest.mark.parametrize(("alpha", "beta"), [(1 / 6, 0.5), (0.2, 0.5)])
def test_hard_sigmoid_becomes_relu6_arithmetic(tmp_path: Path, alpha: float, beta: float) -> None:
    nodes = [helper.make_node("HardSigmoid", ["x"], ["y"], alpha=alpha, beta=beta)]
    model = save_graph(tmp_path / "hard_sigmoid.onnx", nodes)
    x = np.linspace(-8, 8, 64, dtype=np.float32).reshape(8, 8)
    before = run(model, x)
    assert rewrite_hard_sigmoid(model) == 1
    onnx.checker.check_model(str(model))
    np.testing.assert_allclose(run(model, x), before, rtol=1e-6, atol=1e-7)
    ops = [n.op_type for n in onnx.load(str(model)).graph.node]
    # the slope is 1 for HardSwish's own gate (alpha 1/6): no multiplication by it
    assert ops == (["Add"] if alpha == 1 / 6 else ["Mul", "Add"]) + ["Clip", "Mul"]


@pytest.mark.parametrize(("native", "divide"), [(False, True), (False, False), (True, True)])
def test_hardswish_scaled_form_for_tflite_16x8(tmp_path: Path, native: bool, divide: bool) -> None:
    """``(x / 6) * relu6(x + 3)``: the order the TFLite converter leaves unfused (its fused
    HARD_SWISH has no 16x8 kernel), from Paddle's decomposition (divided by 6 or multiplied by
    1/6) and from ONNX's own HardSwish op."""
    if native:
        nodes = [helper.make_node("HardSwish", ["x"], ["y"])]
        model = save_graph(tmp_path / "native.onnx", nodes, opset=14)
    else:
        model = paddle_hardswish(tmp_path / "paddle.onnx", divide)
    x = np.linspace(-8, 40, 64, dtype=np.float32).reshape(8, 8)
    before = run(model, x)
    assert rewrite_hardswish(model) == 1
    onnx.checker.check_model(str(model))
    np.testing.assert_allclose(run(model, x), before, rtol=1e-5, atol=1e-6)
    # the constants of the old form dropped with it
    assert [n.op_type for n in onnx.load(str(model)).graph.node] == ["Mul", "Add", "Clip", "Mul"]
