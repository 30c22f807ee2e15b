"""A static estimate of which ops of a Core ML ML program the Apple Neural Engine may take.

Apple publishes no list of the Neural Engine's ops, and its runtime exists only on Apple's
systems, so nothing here compiles: the rules below are the constraints Apple and coremltools
document, applied per op of the program, and the report says so (``kind = "estimate"``). Each
rule's source is cited in ``firmware-notes/apple-ane.md`` (section "Neural Engine placement"):

- an op computing in float 32 is barred from the Neural Engine (coremltools, Typed Execution:
  "Only the ANE is barred as a compute unit when a model is typed with float 32 precision");
  the casts between the app's float 32 inputs/outputs and the fp16 program are the model's
  boundary, not a fall-off;
- the scatter family falls off the Neural Engine (coremltools' torch frontend: "scatter op falls
  off ANE, while gather op resides");
- range-flexible input shapes: only the default shape runs on the Neural Engine (Apple's answer
  on the developer forums, thread 724930);
- weight decompression (``constexpr_*`` ops) does not keep an op off the Neural Engine, which
  decompresses weights just in time (coremltools, Performance impact).

Ops on int32 or bool tensors are eligible here because nothing documents otherwise; they are
counted in the notes. Core ML decides the real placement at load time: ``MLComputePlan`` on a
device (iOS 17.4 / macOS 14.4) gives it per op.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgepack.placement import ESTIMATE, OK, CpuOp, Device, Placement, placement_on

TOOL = "edgepack's static estimate from Apple's documented constraints"
NAME = "ane"
SCATTER = {"scatter", "scatter_nd", "scatter_along_axis"}
INTEGER_TYPES = {"INT32", "INT16", "INT8", "UINT8", "UINT16", "BOOL", "INT64"}


def device(name: str = NAME) -> Device:
    return Device(NAME, "Apple", "Neural Engine", TOOL, kind=ESTIMATE)


def knows(name: str) -> bool:
    return name.lower() == NAME


def place(package: Path, device: Device) -> Placement:
    """Apply the documented rules to every op of the package's ``main`` function."""
    from coremltools.proto import MIL_pb2, Model_pb2

    spec = Model_pb2.Model()
    spec.ParseFromString((package / "Data" / "com.apple.CoreML" / "model.mlmodel").read_bytes())
    function = spec.mlProgram.functions["main"]
    operations = list(function.block_specializations[function.opset].operations)
    inputs = {i.name for i in function.inputs}
    # the model's boundary: the program's outputs and what its classifier op reads
    outputs = set(function.block_specializations[function.opset].outputs) | {
        arg.name
        for op in operations
        if op.type == "classify"
        for argument in op.inputs.values()
        for arg in argument.arguments
    }
    type_name = MIL_pb2.DataType.Name
    cpu_ops: list[CpuOp] = []
    eligible: list[bool] = []
    integer_ops = 0
    weights = 0
    for index, op in enumerate(operations):
        if op.type == "const" or op.type.startswith("constexpr_"):
            weights += 1
            continue
        types = [type_name(o.type.tensorType.dataType) for o in op.outputs]
        reason = _refusal(op, types)
        if reason is None:
            eligible.append(True)
            integer_ops += any(t in INTEGER_TYPES for t in types)
            continue
        eligible.append(False)
        cpu_ops.append(
            CpuOp(index, op.type, reason, _op_name(op), _is_boundary(op, inputs, outputs))
        )
    notes = [
        "a static estimate from documented constraints: Core ML decides at load time "
        "(MLComputePlan on a device gives the real placement)",
        f"{weights} weight ops (const, constexpr_*) not counted",
    ]
    if integer_ops:
        notes.append(f"{integer_ops} ops on integer or bool tensors: not documented either way")
    if _range_shaped(spec):
        notes.append(
            "range-flexible input shapes: only the default shape runs on the Neural Engine"
        )
    if any(op.type == "quantize" for op in operations):
        notes.append("int8 activations (W8A8): the int8-int8 path is on A17 Pro / M4 and later")
    return placement_on(
        device,
        OK,
        ops_total=len(eligible),
        ops_offloaded=sum(eligible),
        partitions=_runs(eligible),
        cpu_ops=tuple(cpu_ops),
        versions={"coremltools": _coremltools_version()},
        notes=tuple(notes),
    )


def _refusal(op: Any, types: list[str]) -> str | None:
    if op.type == "classify":
        return "a classifier's label lookup (strings, a dictionary): Core ML's own, on the CPU"
    if op.type in SCATTER:
        return "the scatter family falls off the Neural Engine (coremltools)"
    if "FLOAT32" in types and op.type != "cast":
        return "computes in float 32, which bars the Neural Engine (coremltools, Typed Execution)"
    if op.type == "cast" and "FLOAT32" in types:
        return "a cast to float 32 runs off the Neural Engine (float 32 typed)"
    return None


def _is_boundary(op: Any, inputs: set[str], outputs: set[str]) -> bool:
    """A cast between the app's float 32 tensors and the fp16 program, or the classifier's
    label lookup."""
    if op.type == "classify":
        return True
    if op.type != "cast":
        return False
    read = {arg.name for argument in op.inputs.values() for arg in argument.arguments}
    written = {o.name for o in op.outputs}
    return bool(read & inputs) or bool(written & outputs)


def _op_name(op: Any) -> str:
    return op.outputs[0].name if op.outputs else op.type


def _runs(eligible: list[bool]) -> int:
    """Runs of consecutive eligible ops in program order: the estimate's partitions."""
    return sum(1 for i, e in enumerate(eligible) if e and (i == 0 or not eligible[i - 1]))


def _range_shaped(spec: Any) -> bool:
    for feature in spec.description.input:
        array = feature.type.multiArrayType
        if array.WhichOneof("ShapeFlexibility") == "shapeRange":
            return True
    return False


def _coremltools_version() -> str:
    import coremltools

    return str(coremltools.__version__)
