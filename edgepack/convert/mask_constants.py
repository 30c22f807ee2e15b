"""Attention-mask constants that would wreck int8 ranges, bounded before quantization.

Transformer exports mask attention logits with a huge constant: ``where(mask, x, -3.4e38)``
(Keras 3, PyTorch's ``finfo.min``), ``x + (1 - mask) * -10000`` (older BERT exports) or
``-inf``. Softmax turns those positions into zeros, but a quantizer that calibrates the logits
sees a range of 1e38 or 1e4 and gives every real logit the same int8 value: attention becomes
uniform (onnxruntime's static defaults: pooled cosine 0.70 on a MiniLM). Any constant that
reaches a Softmax input with a magnitude of at least :data:`HUGE` is replaced by a bound ``L``
measured on the model's own logits, large enough that ``exp`` of every masked position stays
below ``exp(-MARGIN)`` of the largest logit, so the softmax is unchanged to float32 rounding;
the caller checks the float outputs against the original before quantizing.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

HUGE = 1e4
MARGIN = 30.0  # exp(-30) ~ 1e-13: below float32's resolution next to 1
# ops a mask constant flows through on its way to the logits
PASS_THROUGH = frozenset(
    {"Mul", "Add", "Sub", "Where", "Cast", "Expand", "Unsqueeze", "Squeeze", "Reshape",
     "Neg", "Concat", "Tile", "Transpose", "Min", "Max", "Identity"}
)  # fmt: skip


def bound_mask_constants(path: Path, feeds: Mapping[str, np.ndarray]) -> dict[str, Any] | None:
    """Rewrite ``path`` in place when huge constants reach a Softmax; returns what was done
    (``constants``: their names, ``bound``: the magnitude given to them, ``softmax_inputs``)
    or None when the model has none. ``feeds`` (keyed by the model's input names) measure the
    logits the bound must clear."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    constants = dict(_huge_constants(graph))
    reached = _softmax_inputs_reached(graph, set(constants))
    if not reached:
        return None
    used = {name for name, tensors in reached.items() if tensors}
    logits = _measure(model, sorted({t for name in used for t in reached[name]}), feeds)
    smallest = min(float(np.min(np.abs(constants[name]))) for name in used)
    real = logits[np.abs(logits) < smallest / 2]
    if real.size == 0:
        return None
    spread = float(real.max() - real.min()) + float(np.abs(real).max())
    bound = float(math.ceil((spread + MARGIN) / 10.0) * 10.0)
    for name in used:
        value = constants[name]
        replaced = np.where(np.abs(value) >= HUGE, np.sign(value) * bound, value).astype(
            value.dtype
        )
        _set_constant(graph, name, numpy_helper.from_array(replaced, name))
    onnx.save(model, str(path))
    return {
        "constants": sorted(used),
        "bound": bound,
        "softmax_inputs": sorted({t for name in used for t in reached[name]}),
    }


def _huge_constants(graph: Any) -> Iterator[tuple[str, np.ndarray]]:
    """Small float constants (initializers and Constant nodes) holding a value >= HUGE."""
    from onnx import numpy_helper

    tensors = [(t.name, t) for t in graph.initializer]
    tensors += [
        (node.output[0], attribute.t)
        for node in graph.node
        if node.op_type == "Constant"
        for attribute in node.attribute
        if attribute.name == "value"
    ]
    for name, tensor in tensors:
        value = numpy_helper.to_array(tensor)
        if value.dtype.kind == "f" and 0 < value.size <= 16 and np.abs(value).max() >= HUGE:
            yield name, value


def _softmax_inputs_reached(graph: Any, constants: set[str]) -> dict[str, set[str]]:
    """For each constant, the Softmax inputs it flows into through mask arithmetic."""
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    reached: dict[str, set[str]] = {}
    for constant in constants:
        found: set[str] = set()
        pending, seen = [constant], {constant}
        while pending:
            tensor = pending.pop()
            for node in readers.get(tensor, []):
                if node.op_type == "Softmax":
                    found.add(tensor)
                elif node.op_type in PASS_THROUGH:
                    for out in node.output:
                        if out not in seen:
                            seen.add(out)
                            pending.append(out)
        reached[constant] = found
    return reached


def _measure(model: Any, tensors: list[str], feeds: Mapping[str, np.ndarray]) -> np.ndarray:
    """Every value the ``tensors`` take on ``feeds``, flattened."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    probe.graph.output.extend(onnx.ValueInfoProto(name=t) for t in tensors if t not in known)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(
        probe.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    names = {i.name for i in session.get_inputs()}
    values = session.run(tensors, {k: v for k, v in feeds.items() if k in names})
    return np.concatenate([np.asarray(v, np.float64).ravel() for v in values])


def _set_constant(graph: Any, name: str, tensor: Any) -> None:
    for index, initializer in enumerate(graph.initializer):
        if initializer.name == name:
            graph.initializer[index].CopyFrom(tensor)
            return
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            for attribute in node.attribute:
                if attribute.name == "value":
                    attribute.t.CopyFrom(tensor)
