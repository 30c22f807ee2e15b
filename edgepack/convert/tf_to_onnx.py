"""Keras / SavedModel -> ONNX with tf2onnx, checked against the source on calibration samples."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgepack._native import captured_output, import_tensorflow
from edgepack.convert.compare import check_float_match
from edgepack.errors import ConversionError
from edgepack.frontends.base import SourceModel
from edgepack.frontends.tf_call import signature_name, tf_callable, tf_input_dtype

FLOAT_TOLERANCE = 1e-3


def tensorflow_to_onnx(
    source: SourceModel, batch: Mapping[str, np.ndarray], opset: int, target: Path
) -> tuple[dict[str, str], float]:
    """Write ``source`` as a float ONNX model (dynamic batch) to ``target``.

    Returns the map from ONNX input names to source input names, and the largest relative
    error of the converted model on ``batch``.
    """
    names = [signature_name(s.name, i) for i, s in enumerate(source.inputs)]
    shapes = tuple(batch[s.name].shape[1:] for s in source.inputs)
    key = (source.sha256, str(source.path), opset, shapes)
    if _LAST_CONVERSION.get("key") != key:
        _LAST_CONVERSION.clear()
        _LAST_CONVERSION.update(key=key, model=_convert(source, names, shapes, opset))
    target.write_bytes(_LAST_CONVERSION["model"])
    mapping = dict(zip(names, (s.name for s in source.inputs), strict=True))
    return mapping, _check(source, target, batch, mapping)


# The last conversion, by source (sha256 and path), opset and per-sample input shapes: a
# build with a calibration search converts the same model once per candidate and fold, and
# the result is byte-identical (names made canonical below), so it is converted once. Only
# the last model is kept: a process that builds many models holds one.
_LAST_CONVERSION: dict[str, Any] = {}


def _convert(
    source: SourceModel, names: list[str], shapes: tuple[tuple[int, ...], ...], opset: int
) -> bytes:
    import tf2onnx

    tf = import_tensorflow()
    specs = [
        tf.TensorSpec((None, *shape), tf_input_dtype(tf, s), name=name)
        for name, s, shape in zip(names, source.inputs, shapes, strict=True)
    ]
    function = tf.function(tf_callable(source), input_signature=specs)
    try:
        with captured_output():
            proto, _ = tf2onnx.convert.from_function(function, input_signature=specs, opset=opset)
    except Exception as exc:
        text = " ".join(str(exc).split())[:300]
        raise ConversionError(f"tf2onnx could not convert the model: {text}") from None
    _canonical_names(proto)
    return bytes(proto.SerializeToString())


_GENERATED = re.compile(r"__(\d+)")


def _canonical_names(proto: Any) -> None:
    """Make tf2onnx's generated names depend on the model only.

    tf2onnx suffixes the names it makes with a process-wide counter (``Reshape__38``) and, when
    it merges identical constants, keeps whichever name its hash-ordered set yields first. So
    the same model gives different files from run to run (and the graph's doc string names
    the traced function, numbered per process); its unknown dimensions (``unk__227``) are
    numbered by the same kind of counter. Generated constants are renamed ``const__K``, every
    other generated suffix renumbered and unknown dimensions renamed ``unk__K``, all in order
    of first use.
    """
    graph = proto.graph
    graph.doc_string = "converted by tf2onnx"  # tf2onnx writes the traced function's counter
    generated = {i.name for i in graph.initializer if _GENERATED.search(i.name)}
    renamed: dict[str, str] = {}
    numbers: dict[str, str] = {}

    def canonical(name: str) -> str:
        if name in generated:
            return renamed.setdefault(name, f"const__{len(renamed) + 1}")
        return _GENERATED.sub(
            lambda m: "__" + numbers.setdefault(m.group(1), str(len(numbers) + 1)), name
        )

    for node in graph.node:
        node.input[:] = [canonical(n) for n in node.input]
        node.output[:] = [canonical(n) for n in node.output]
        node.name = canonical(node.name)
    for item in [*graph.initializer, *graph.value_info, *graph.input, *graph.output]:
        item.name = canonical(item.name)
    ordered = sorted(
        graph.initializer,
        key=lambda i: (0, int(i.name[7:])) if i.name.startswith("const__") else (1, 0),
    )
    copies = [type(i).FromString(i.SerializeToString()) for i in ordered]
    del graph.initializer[:]
    graph.initializer.extend(copies)
    _canonical_dimensions(graph)


def _canonical_dimensions(graph: Any) -> None:
    dimensions: dict[str, str] = {}
    for value in [*graph.input, *graph.output, *graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") and dim.dim_param.startswith("unk__"):
                dim.dim_param = dimensions.setdefault(dim.dim_param, f"unk__{len(dimensions) + 1}")


def _check(
    source: SourceModel, target: Path, batch: Mapping[str, np.ndarray], mapping: dict[str, str]
) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    outputs = [o.name for o in session.get_outputs()]
    missing = [o.name for o in source.outputs if o.name not in outputs]
    if missing:
        raise ConversionError(f"tf2onnx output names {outputs} miss source outputs {missing}")
    values = session.run(outputs, {onnx: batch[name] for onnx, name in mapping.items()})
    converted = dict(zip(outputs, values, strict=True))
    errors = check_float_match(source.run(batch), converted, FLOAT_TOLERANCE, "tf2onnx")
    return max(errors.values())
