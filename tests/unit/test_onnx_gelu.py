"""PyTorch's exact GELU is rewritten, in ONNX, into the erf form the TFLite converter fuses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgepack.convert.onnx_gelu import rewrite_gelu


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
