"""Exact GELU in ONNX graphs rewritten into the form the TFLite converter fuses.

PyTorch exports ``nn.GELU()`` as ``Mul(Mul(x, Add(Erf(Div(x, 1.4142)), 1)), 0.5)``. Through
onnx2tf that becomes TF ops the TFLite converter does not recognise as GELU, and its int8
builtins have no ERF ("TFLite converter cannot build a full-integer model; ops: Erf"). Written
as ``Mul(Mul(x, 0.5), Add(Erf(Mul(x, 0.70710678)), 1))``, the order Keras' erf-form GELU has,
the converter fuses the five ops into its GELU op, which has int8 kernels. The float result
is the same to float32 rounding; onnx2tf's output is checked against the ONNX model after.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

SQRT2 = float(np.sqrt(2.0))


def rewrite_gelu(path: Path) -> int:
    """Rewrite every exact GELU of the ONNX file at ``path`` in place; returns how many."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    constants = _scalar_constants(graph)
    producers = {out: node for node in graph.node for out in node.output}
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    for value in graph.output:  # a graph output is read by the app: keep it
        readers.setdefault(value.name, []).append(value)
    rewritten = 0
    for erf in [n for n in graph.node if n.op_type == "Erf"]:
        match = _match(erf, producers, readers, constants)
        if match is None:
            continue
        x, old_nodes, output = match
        prefix = f"{erf.name or erf.output[0]}/gelu"
        new_nodes = _erf_form(prefix, x, output)
        position = min(list(graph.node).index(n) for n in old_nodes)
        for node in old_nodes:
            graph.node.remove(node)
        for offset, node in enumerate(new_nodes):
            graph.node.insert(position + offset, node)
        graph.initializer.extend(_erf_form_constants(prefix))
        rewritten += 1
    if rewritten:
        onnx.save(model, str(path))
    return rewritten


def _match(
    erf: Any, producers: dict[str, Any], readers: dict[str, list[Any]], constants: dict[str, float]
) -> tuple[str, list[Any], str] | None:
    """``(x, the five nodes, the output name)`` when ``erf`` sits in PyTorch's GELU."""
    scale = producers.get(erf.input[0])
    if scale is None or not _scales_by_root_half(scale, constants):
        return None
    x = scale.input[0]
    add = _only_reader(erf.output[0], readers, "Add")
    times_x = add and _only_reader(add.output[0], readers, "Mul")
    half = times_x and _only_reader(times_x.output[0], readers, "Mul")
    chain = [scale, erf, add, times_x, half]
    matches = (
        half is not None
        and _other_is(add, erf.output[0], 1.0, constants)
        and x in times_x.input
        and _other_is(half, times_x.output[0], 0.5, constants)
        and all(len(readers.get(node.output[0], [])) == 1 for node in chain[:-1])
    )
    return (x, chain, half.output[0]) if matches else None


def _scales_by_root_half(node: Any, constants: dict[str, float]) -> bool:
    """``node`` is ``x / sqrt(2)`` or ``x * (1 / sqrt(2))``."""
    if node.op_type not in ("Div", "Mul"):
        return False
    wanted = SQRT2 if node.op_type == "Div" else 1.0 / SQRT2
    return bool(np.isclose(constants.get(node.input[1], np.nan), wanted, rtol=1e-5))


def _only_reader(tensor: str, readers: dict[str, list[Any]], op_type: str) -> Any:
    found = readers.get(tensor, [])
    return found[0] if len(found) == 1 and getattr(found[0], "op_type", None) == op_type else None


def _other_is(node: Any, tensor: str, value: float, constants: dict[str, float]) -> bool:
    others = [name for name in node.input if name != tensor]
    return len(others) == 1 and bool(np.isclose(constants.get(others[0], np.nan), value))


def _scalar_constants(graph: Any) -> dict[str, float]:
    from onnx import numpy_helper

    tensors = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    tensors[node.output[0]] = attribute.t
    scalars = {}
    for name, tensor in tensors.items():
        value = numpy_helper.to_array(tensor)
        if value.size == 1 and value.dtype.kind == "f":
            scalars[name] = float(value.reshape(()))
    return scalars


def _erf_form(prefix: str, x: str, output: str) -> list[Any]:
    from onnx import helper

    return [
        helper.make_node("Mul", [x, f"{prefix}/half_c"], [f"{prefix}/half"], name=f"{prefix}/half"),
        helper.make_node(
            "Mul", [x, f"{prefix}/scale_c"], [f"{prefix}/scaled"], name=f"{prefix}/scaled"
        ),
        helper.make_node("Erf", [f"{prefix}/scaled"], [f"{prefix}/erf"], name=f"{prefix}/erf"),
        helper.make_node(
            "Add", [f"{prefix}/erf", f"{prefix}/one_c"], [f"{prefix}/plus"], name=f"{prefix}/plus"
        ),
        helper.make_node("Mul", [f"{prefix}/half", f"{prefix}/plus"], [output], name=prefix),
    ]


def _erf_form_constants(prefix: str) -> list[Any]:
    from onnx import numpy_helper

    return [
        numpy_helper.from_array(np.array(value, np.float32), f"{prefix}/{name}")
        for name, value in (("half_c", 0.5), ("scale_c", 1.0 / SQRT2), ("one_c", 1.0))
    ]
