"""What no target can package is found in the ONNX graph, with no false alarm on ordinary
models whose input and output share a shape."""

from __future__ import annotations

from onnx import TensorProto, helper

from edgepack.frontends.onnx_refusals import refusals


def identity_graph(input_name: str, output_name: str, op: str = "Relu"):
    shape = [2, 1, 128]
    return helper.make_graph(
        [helper.make_node(op, [input_name], [output_name])],
        "g",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, shape)],
    )


def test_a_state_returned_updated_is_refused() -> None:
    (found,) = refusals(identity_graph("state", "stateN"))
    assert found.startswith("recurrent state comes in as an input (state)")


def test_an_autoencoder_is_not_stateful() -> None:
    assert refusals(identity_graph("image", "reconstruction")) == []


def test_quantized_ops_are_named() -> None:
    (found,) = refusals(identity_graph("x", "y", op="DynamicQuantizeLinear"))
    assert "already quantized (DynamicQuantizeLinear)" in found


def test_control_flow_inside_a_subgraph_is_found() -> None:
    inner = helper.make_graph(
        [helper.make_node("Scan", ["a"], ["b"], num_scan_inputs=1, body=identity_graph("p", "q"))],
        "inner",
        [],
        [helper.make_tensor_value_info("b", TensorProto.FLOAT, None)],
    )
    graph = identity_graph("x", "y")
    graph.node.append(helper.make_node("If", ["c"], ["z"], then_branch=inner, else_branch=inner))
    (found,) = refusals(graph)
    assert found.startswith("control flow (If ('z'), Scan ('b'))")
