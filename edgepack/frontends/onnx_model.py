"""ONNX frontend: the float reference runs in onnxruntime's CPU execution provider."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.errors import ModelLoadError
from edgepack.frontends.base import Feeds, Outputs, SourceModel, TensorSpec
from edgepack.frontends.onnx_refusals import refusals

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


def load_onnx(path: Path) -> SourceModel:
    """Check the ONNX file and open an onnxruntime session on it (the file is not modified)."""
    import onnx
    import onnxruntime as ort

    try:
        onnx.checker.check_model(str(path))
        graph = onnx.load(str(path), load_external_data=False).graph
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        text = " ".join(str(exc).split())[:300]
        raise ModelLoadError(f"{path}: not a loadable ONNX model ({text})") from None
    inputs = [tensor_spec(i) for i in session.get_inputs()]
    outputs = [tensor_spec(o) for o in session.get_outputs()]

    def run(feeds: Feeds) -> Outputs:
        values = session.run(
            [o.name for o in outputs],
            {spec.name: np.asarray(feeds[spec.name], dtype=spec.dtype) for spec in inputs},
        )
        return {spec.name: np.asarray(v) for spec, v in zip(outputs, values, strict=True)}

    return SourceModel(
        path=path,
        format="onnx",
        inputs=inputs,
        outputs=outputs,
        runner=run,
        native=path,
        versions={"onnx": metadata.version("onnx"), "onnxruntime": metadata.version("onnxruntime")},
        layers=tuple(_node_name(node) for node in _computing(graph)),
        tensor_layers={
            output: _node_name(node) for node in _computing(graph) for output in node.output
        },
        refusals=tuple(refusals(graph)),
    )


def _computing(graph: Any) -> list[Any]:
    """The graph's nodes but its Constant nodes: those hold weights (a Paddle export has one
    per initializer), they are not layers a per-layer report or a precision plan can name."""
    return [node for node in graph.node if node.op_type != "Constant"]


def _node_name(node: Any) -> str:
    return str(node.name or node.output[0])


def tensor_spec(arg: object) -> TensorSpec:
    """An onnxruntime session's input or output as a :class:`TensorSpec`."""
    shape = tuple(d if isinstance(d, int) else None for d in arg.shape)  # type: ignore[attr-defined]
    dtype = str(_ORT_TYPES.get(arg.type, arg.type))  # type: ignore[attr-defined]
    return TensorSpec(name=arg.name, shape=shape, dtype=dtype)  # type: ignore[attr-defined]
