"""ONNX placement on Android NNAPI and Apple Core ML through onnxruntime's execution providers,
from the rules onnxruntime ships (``onnxruntime.tools.mobile_helpers.usability_checker``, the
code behind ``python -m onnxruntime.tools.check_onnx_model_mobile_usability``).

The checker knows which op types each EP takes and that it needs fixed input shapes; it does
not know every per-op limit (its caveats say which), so it is a rule-based report, not a
compile. It runs on the model with the input shapes fixed, after onnxruntime's basic graph
optimizations, as the tool does.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from edgepack.placement import OK, RULES, CpuOp, Device, Placement, placed_once, placement_on

TOOL = "onnxruntime mobile usability checker (rules)"
DEVICES = {
    "nnapi": ("Android", "NNAPI execution provider", None),
    "coreml-ep": ("Apple", "Core ML execution provider (ML program)", "mlprogram"),
}


def device(name: str) -> Device:
    vendor, accelerator, _ = DEVICES[name.lower()]
    return Device(name.lower(), vendor, accelerator, TOOL, kind=RULES)


def knows(name: str) -> bool:
    return name.lower() in DEVICES


def place(model_file: Path, device: Device, shapes: Mapping[str, Sequence[int]]) -> Placement:
    """What the EP's rules take of ``model_file`` with its inputs fixed to ``shapes``."""
    key = ("ort-mobile", device, tuple(sorted((k, tuple(v)) for k, v in shapes.items())))
    return placed_once(model_file, key, lambda: _place(model_file, device, shapes))


def _place(model_file: Path, device: Device, shapes: Mapping[str, Sequence[int]]) -> Placement:
    import onnx
    from onnxruntime.tools.mobile_helpers import usability_checker as checker
    from onnxruntime.tools.onnx_model_utils import optimize_model

    from edgepack.placement.qnn import fixed_shape_copy

    with tempfile.TemporaryDirectory(prefix="edgepack-ort-") as scratch:
        fixed = Path(scratch) / "fixed.onnx"
        fixed_shape_copy(model_file, shapes, fixed)
        optimized = Path(scratch) / "optimized.onnx"
        optimize_model(fixed, optimized, use_external_initializers=True)
        model = checker.ModelProtoWithShapeInfo(optimized).model_with_shape_info
        info = _checks(checker)[device.name](model)
    graph = model.graph
    inputs = {i.name for i in graph.input}
    outputs = {o.name for o in graph.output}
    taken = {id(node) for group in info.supported_groups for node in group}
    cpu_ops = []
    for index, node in enumerate(graph.node):
        if id(node) in taken:
            continue
        if f"{node.domain or 'ai.onnx'}:{node.op_type}" in info.unsupported_ops:
            reason = f"{node.op_type} is not among the {device.accelerator}'s ops"
        else:
            reason = "an input without a fixed shape, or over the EP's rank"
        boundary = (node.op_type == "QuantizeLinear" and node.input[0] in inputs) or (
            node.op_type == "DequantizeLinear" and bool(set(node.output) & outputs)
        )
        cpu_ops.append(CpuOp(index, node.op_type, reason, node.name, boundary))
    caveats = info.supported_ops_checker.get_caveats()
    del onnx  # imported for the checker's protobuf types
    return placement_on(
        device,
        OK,
        ops_total=info.num_nodes,
        ops_offloaded=info.num_supported_nodes,
        partitions=info.num_partitions,
        cpu_ops=tuple(cpu_ops),
        versions={"onnxruntime": metadata.version("onnxruntime")},
        notes=(
            "op types and fixed shapes only: per-op limits not checked",
            *sorted(str(c) for c in caveats),
        ),
    )


def _checks(checker: Any) -> dict[str, Callable[[Any], Any]]:
    return {
        "nnapi": lambda model: checker.check_nnapi_partitions(model, True),
        "coreml-ep": lambda model: checker.check_coreml_partitions(
            model, True, "coreml_supported_mlprogram_ops.md"
        ),
    }
