"""ONNX placement on Qualcomm's Hexagon NPU from onnxruntime's QNN execution provider.

``onnxruntime-qnn`` (``pip install "edgepack[npu]"``) is an execution-provider plugin with
Qualcomm's QNN host libraries. On a Linux x86-64 host its HTP backend validates every node of
a model for a named SoC (offline preparation, as for an EP-context model) and says why it
refuses one; onnxruntime then assigns each node to the QNN EP or the CPU. Both are read from
onnxruntime's verbose log of a session made in a child process (the log is written by native
code to its standard error), on the model with fixed input shapes, as the device will run it.
With ``compile``, the session also writes the compiled EP-context model.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edgepack.placement import (
    FAILED,
    OK,
    CpuOp,
    Device,
    Placement,
    distribution_version,
    package_dir,
    placed_once,
    placement_on,
    unavailable,
)

TIMEOUT_SECONDS = 900
TOOL = "onnxruntime QNN execution provider (HTP)"
ACCELERATOR = "Hexagon NPU (HTP)"
# QNN's SoC model ids for the HTP backend's offline preparation (``soc_model``), as QNN 2.51
# reports them for these SoC names (LiteRT's Qualcomm plugin logs "Initializing QNN backend for
# SoC model: N" for the same name; onnxruntime-qnn's backend logs the HTP architecture).
SOC_IDS: dict[str, tuple[int, int]] = {
    "SA8255": (52, 73),
    "SA8295": (39, 68),
    "SM8350": (30, 68),
    "SM8450": (36, 69),
    "SM8475": (42, 69),
    "SM8550": (43, 73),
    "SM8650": (57, 75),
    "SM8750": (69, 79),
    "SM8845": (97, 81),
    "SM8850": (87, 81),
}
GET_IT = "pip install 'edgepack[npu]' (onnxruntime-qnn, Linux x86-64 and Windows)"


def device(name: str) -> Device:
    """The QNN device for a Qualcomm SoC name (``missing`` set without onnxruntime-qnn)."""
    soc = name.split(":", 1)[-1].upper()
    missing = (
        None if package_dir("onnxruntime_qnn") else f"onnxruntime-qnn is not installed: {GET_IT}"
    )
    return Device(soc, "Qualcomm", ACCELERATOR, TOOL, missing=missing)


def knows(name: str) -> bool:
    return name.split(":", 1)[-1].upper() in SOC_IDS


def place(
    model_file: Path,
    device: Device,
    shapes: Mapping[str, Sequence[int]],
    compile: bool = True,
    artefact: Path | None = None,
) -> Placement:
    """Which nodes of ``model_file`` the QNN EP takes for ``device`` (inputs fixed to
    ``shapes``), and, with ``compile``, its compiled EP-context model (kept at ``artefact``)."""
    if device.missing is not None:
        return unavailable(device)
    if artefact is None:
        key = ("qnn", device, compile, tuple(sorted((k, tuple(v)) for k, v in shapes.items())))
        return placed_once(model_file, key, lambda: _place(model_file, device, shapes, compile))
    return _place(model_file, device, shapes, compile, artefact)


def _place(
    model_file: Path,
    device: Device,
    shapes: Mapping[str, Sequence[int]],
    compile: bool,
    artefact: Path | None = None,
) -> Placement:
    soc_id, arch = SOC_IDS[device.name]
    options = {"backend_type": "htp", "soc_model": str(soc_id), "htp_arch": str(arch)}
    with tempfile.TemporaryDirectory(prefix="edgepack-qnn-") as scratch:
        fixed = Path(scratch) / "fixed.onnx"
        nodes, boundary = fixed_shape_copy(model_file, shapes, fixed)
        context = Path(scratch) / "context.onnx"
        request = {"model": str(fixed), "context": str(context) if compile else "", **options}
        child = subprocess.run(
            [sys.executable, "-m", "edgepack.placement.qnn", json.dumps(request)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_SECONDS,
            check=False,
        )
        log = child.stderr + child.stdout
        result = _result(child)
        versions = _versions(log)
        verdicts = _verdicts(log)
        cpu_names, partitions = _assignment(log)
        if result.get("error") and not (cpu_names or partitions):
            return placement_on(
                device,
                FAILED,
                ops_total=len(nodes),
                compile_error=str(result["error"])[:500],
                versions=versions,
            )
        cpu_ops = _cpu_ops(nodes, cpu_names, verdicts, boundary)
        on_cpu = {c.name for c in cpu_ops}
        offloaded = sum(
            1
            for name, _ in nodes
            if verdicts.get(name, ("",))[0] == "PASSED" and name not in on_cpu
        )
        # the model's nodes onnxruntime replaced before assigning (constant folding, fusions)
        folded = sum(
            1
            for name, _ in nodes
            if name not in on_cpu and verdicts.get(name, ("",))[0] != "PASSED"
        )
        compiled: bool | None = None
        error = None
        if compile:
            compiled = bool(result.get("ok")) and context.is_file() and context.stat().st_size > 0
            error = None if compiled else str(result.get("error") or "no EP-context model")[:500]
            if compiled and artefact is not None:
                artefact.parent.mkdir(parents=True, exist_ok=True)
                artefact.write_bytes(context.read_bytes())
        return placement_on(
            device,
            OK,
            ops_total=len(nodes),
            ops_offloaded=offloaded,
            partitions=partitions,
            cpu_ops=tuple(cpu_ops),
            compiled=compiled,
            compile_error=error,
            versions=versions,
            notes=(
                f"input shapes fixed to {_shapes_text(shapes)}",
                f"{folded} nodes folded or fused away by onnxruntime before assignment",
            ),
        )


def fixed_shape_copy(
    model_file: Path, shapes: Mapping[str, Sequence[int]], destination: Path
) -> tuple[list[tuple[str, str]], set[str]]:
    """Write ``model_file`` with its inputs' shapes fixed (every node named uniquely, so the
    EP's log can be matched to nodes); returns (node name, op type) in graph order and the
    names of the boundary nodes: quantize nodes of graph inputs, dequantize nodes of outputs."""
    import onnx

    model = onnx.load(str(model_file))
    for graph_input in model.graph.input:
        shape = shapes.get(graph_input.name)
        if shape is None:
            continue
        dims = graph_input.type.tensor_type.shape.dim
        for dim, value in zip(dims, shape, strict=True):
            dim.Clear()
            dim.dim_value = int(value)
    seen: set[str] = set()
    for index, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.name or node.op_type}__{index}"
        seen.add(node.name)
    onnx.save(model, str(destination))
    inputs = {i.name for i in model.graph.input}
    outputs = {o.name for o in model.graph.output}
    boundary = {
        node.name
        for node in model.graph.node
        if (node.op_type == "QuantizeLinear" and node.input[0] in inputs)
        or (node.op_type == "DequantizeLinear" and set(node.output) & outputs)
    }
    return [(node.name, node.op_type) for node in model.graph.node], boundary


def _shapes_text(shapes: Mapping[str, Sequence[int]]) -> str:
    return ", ".join(f"{name} {list(shape)}" for name, shape in shapes.items())


def _result(child: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    found = re.search(r"@@EDGEPACK@@(.*)", child.stdout)
    if found is None:
        tail = " ".join((child.stderr or "").split()[-40:])
        return {"ok": False, "error": f"the QNN session process exited {child.returncode}: {tail}"}
    return dict(json.loads(found.group(1)))


def _versions(log: str) -> dict[str, str]:
    versions = {}
    for distribution in ("onnxruntime", "onnxruntime-qnn"):
        version = distribution_version(distribution)
        if version is not None:
            versions[distribution] = version
    build = re.search(r"Backend build version: (\S+)", log)
    if build:
        versions["qnn_htp_build"] = build.group(1)
    sdk = _qnn_sdk_version()
    if sdk:
        versions["qnn_sdk"] = sdk
    return versions


def _qnn_sdk_version() -> str | None:
    package = package_dir("onnxruntime_qnn")
    if package is None:
        return None
    info = package / "build_and_package_info.py"
    found = re.search(r"qnn_version\s*=\s*'([^']+)'", info.read_text()) if info.is_file() else None
    return None if found is None else found.group(1)


_VALIDATION = re.compile(
    r"Validation (PASSED|FAILED) for \d+ nodes in OrtNodeUnit \(([^)]*)\) :\n((?:\t.*\n)+)"
)
_NODE = re.compile(r"\tOperator type: (\S+) Node name: (.*?) Node index: (\d+)")
_PLACED_ALL = re.compile(r"All nodes placed on \[QNNExecutionProvider\]\. Number of nodes: (\d+)")
_PLACED_ON = re.compile(r"Node\(s\) placed on \[(\w+)\]")
_BOUNDARY_REASON = re.compile(
    r"not take (Q nodes that consume a graph input|DQ nodes that generate)"
)
_PLACED_NODE = re.compile(r"VerifyEachNodeIsAssignedToAnEp\]\s{3}(\S+) \((.*)\)$")


def _verdicts(log: str) -> dict[str, tuple[str, str, str]]:
    """Node name -> (PASSED | FAILED, its node unit, the validator's reason). The EP asks
    twice (before and after the layout transform): the later verdict stands."""
    verdicts = {}
    for status, unit, body in _VALIDATION.findall(log):
        reason = re.search(r"REASON : (.*)", body)
        for _, name, _ in _NODE.findall(body):
            verdicts[name] = (status, unit, reason.group(1).strip() if reason else "")
    return verdicts


def _assignment(log: str) -> tuple[list[tuple[str, str]], int]:
    """onnxruntime's final assignment ("Node placements", verbose): the (op type, node name)
    of every node left to another provider, and the number of QNN partitions."""
    on_cpu: list[tuple[str, str]] = []
    partitions = 0
    provider = None
    for line in log.splitlines():
        if "VerifyEachNodeIsAssignedToAnEp]" not in line:
            continue
        everything = _PLACED_ALL.search(line)
        if everything:
            return [], int(everything.group(1))
        placed_on = _PLACED_ON.search(line)
        if placed_on:
            provider = placed_on.group(1)
            continue
        node = _PLACED_NODE.search(line)
        if node and provider == "QNNExecutionProvider":
            partitions += 1
        elif node and provider:
            on_cpu.append((node.group(1), node.group(2)))
    return on_cpu, partitions


def _cpu_ops(
    nodes: Sequence[tuple[str, str]],
    cpu_names: Sequence[tuple[str, str]],
    verdicts: Mapping[str, tuple[str, str, str]],
    boundary: set[str],
) -> list[CpuOp]:
    index_of = {name: index for index, (name, _) in enumerate(nodes)}
    left = []
    for op, name in cpu_names:
        verdict = verdicts.get(name)
        if verdict is not None and verdict[0] == "FAILED":
            reason = verdict[2] or "refused by QNN's HTP validator"
            if verdict[1] != op:
                reason = f"{reason} (in a {verdict[1]} node unit)"
        elif verdict is not None:
            reason = "validated, but left out of the QNN partitions"
        else:
            reason = "not offered to QNN (a node onnxruntime added or rewrote)"
        # the EP's own words say when it leaves the model's float I/O conversion to the CPU
        at_edge = name in boundary or bool(_BOUNDARY_REASON.search(reason))
        left.append(CpuOp(index_of.get(name, -1), op, reason, name, at_edge))
    return left


def _session(request: dict[str, Any]) -> None:
    """In the child process: one verbose QNN EP session; the result as one marked line."""
    import onnxruntime as ort
    import onnxruntime_qnn

    ort.register_execution_provider_library(
        onnxruntime_qnn.get_ep_name(), onnxruntime_qnn.get_library_path()
    )
    devices = [d for d in ort.get_ep_devices() if d.ep_name == onnxruntime_qnn.get_ep_name()]
    options = ort.SessionOptions()
    options.log_severity_level = 0  # verbose: the validator's verdicts and the node placements
    # basic optimizations keep the model's node names on the CPU side
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    if request["context"]:
        options.add_session_config_entry("ep.context_enable", "1")
        options.add_session_config_entry("ep.context_file_path", request["context"])
        options.add_session_config_entry("ep.context_embed_mode", "1")
    provider = {k: request[k] for k in ("backend_type", "soc_model", "htp_arch")}
    options.add_provider_for_devices(devices, provider)
    try:
        ort.InferenceSession(request["model"], sess_options=options)
        result: dict[str, Any] = {"ok": True}
    except Exception as exc:  # the log says what the EP refused; the error is reported
        result = {"ok": False, "error": " ".join(str(exc).split())}
    print("@@EDGEPACK@@" + json.dumps(result), flush=True)


if __name__ == "__main__":
    _session(json.loads(sys.argv[1]))
