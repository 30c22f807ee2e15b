"""An ONNX model's layers, as the per-layer report and precision plans name them: its
computing nodes, not the Constant nodes that hold weights (a Paddle export has one per
initializer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgepack.frontends.onnx_model import load_onnx


def test_constant_nodes_are_not_layers(tmp_path: Path) -> None:
    weights = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w_value")
    nodes = [
        helper.make_node("Constant", [], ["w"], value=weights),  # unnamed, as Paddle writes them
        helper.make_node("MatMul", ["x", "w"], ["mm"], name="MatMul@0"),
        helper.make_node("Relu", ["mm"], ["y"]),  # unnamed: named after its output
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
    )
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    source = load_onnx(path)
    assert source.layers == ("MatMul@0", "y")
    assert source.tensor_layers == {"mm": "MatMul@0", "y": "y"}
