"""What an ONNX graph holds that no target can package yet, found before any conversion work:
control flow, recurrent state fed in from outside, and models that are already quantized."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

CONTROL_FLOW = ("If", "Loop", "Scan")
QUANTIZED = (
    "QuantizeLinear",
    "DequantizeLinear",
    "DynamicQuantizeLinear",
    "QLinearConv",
    "QLinearMatMul",
    "QLinearAdd",
    "QLinearMul",
    "QLinearSigmoid",
    "QLinearLeakyRelu",
    "QLinearAveragePool",
    "QLinearGlobalAveragePool",
    "QLinearConcat",
    "QLinearSoftmax",
    "QGemm",
    "QAttention",
    "ConvInteger",
    "MatMulInteger",
    "MatMulIntegerToFloat",
)
RECURRENT = {"LSTM": (5, 6), "GRU": (5,), "RNN": (5,)}  # positions of initial_h, initial_c
STATE_WORDS = ("state", "hidden", "cache", "past", "h0", "c0")


def refusals(graph: Any) -> list[str]:
    """One sentence per kind of thing in ``graph`` (an ``onnx.GraphProto``) that edgepack
    cannot package, each saying what was found and what the user can do."""
    found = []
    ops = {node.op_type: node.name or node.output[0] for node in _all_nodes(graph)}
    flow = [f"{op} ({ops[op]!r})" for op in CONTROL_FLOW if op in ops]
    if flow:
        found.append(
            f"control flow ({', '.join(flow)}): edgepack cannot calibrate or convert it yet; "
            "export the model with its loops unrolled and branches fixed (constant shapes), "
            "or split it around them"
        )
    quantized = [op for op in QUANTIZED if op in ops]
    if quantized:
        found.append(
            f"the model is already quantized ({', '.join(quantized)}): quantizing it again "
            "would compound the rounding; give edgepack the float original"
        )
    state = _state_inputs(graph)
    if state:
        found.append(
            f"recurrent state comes in as an input ({', '.join(state)}): calibration runs one "
            "forward pass per sample, with no state carried between them; export a stateless "
            "model (the state initialised inside it) or package the float model"
        )
    return found


def _all_nodes(graph: Any) -> Iterator[Any]:
    """Every node, including those of subgraphs (If branches, Loop bodies)."""
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.HasField("g"):
                yield from _all_nodes(attribute.g)
            for subgraph in attribute.graphs:
                yield from _all_nodes(subgraph)


def _state_inputs(graph: Any) -> list[str]:
    """Graph inputs that are a recurrent op's initial state, or that the graph returns
    updated (an output of the same shape named after state, hidden values or a cache)."""
    constants = {t.name for t in graph.initializer}
    inputs = {value.name: value for value in graph.input if value.name not in constants}
    found = {
        node.input[position]
        for node in graph.node
        for position in RECURRENT.get(node.op_type, ())
        if position < len(node.input) and node.input[position] in inputs
    }
    output_shapes = [_dims(value) for value in graph.output]
    for name, value in inputs.items():
        if any(word in name.lower() for word in STATE_WORDS) and _dims(value) in output_shapes:
            found.add(name)
    return sorted(found)


def _dims(value: Any) -> tuple[Any, ...]:
    return tuple(d.dim_value or d.dim_param for d in value.type.tensor_type.shape.dim)
