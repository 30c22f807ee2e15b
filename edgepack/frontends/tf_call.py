"""Calling TensorFlow-based sources (Keras models, SavedModels) from traced functions."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from edgepack.frontends.base import SourceModel, TensorSpec
from edgepack.frontends.trace_rewrites import quantizable_forms


def keras_arguments(model: Any, args: Sequence[Any]) -> Any:
    """A Keras model's call argument in the structure it was built with (a list for a
    functional model with a list of inputs, one tensor otherwise)."""
    structure = getattr(model, "_inputs_struct", None)  # functional models; Sequential has none
    return list(args) if isinstance(structure, list) or len(args) > 1 else args[0]


def tf_callable(source: SourceModel) -> Callable[..., dict[str, Any]]:
    """A function of the inputs (positional, in source order) returning the outputs keyed by
    source output name: what converters trace, whatever the TF-based source format."""
    output_names = [o.name for o in source.outputs]
    if source.format == "keras":
        model = source.native

        def call_keras(*args: Any) -> dict[str, Any]:
            with quantizable_forms(model):
                result = model(keras_arguments(model, args), training=False)
            values = result if isinstance(result, list | tuple) else [result]
            return dict(zip(output_names, values, strict=True))

        return call_keras
    signature = source.native.signatures["serving_default"]
    input_names = [s.name for s in source.inputs]

    def call_signature(*args: Any) -> dict[str, Any]:
        result = signature(**dict(zip(input_names, args, strict=True)))
        return {name: result[name] for name in output_names}

    return call_signature


def signature_name(name: str, position: int) -> str:
    """A source tensor name as a TF signature / ONNX graph input name (``input:0`` -> ``input``)."""
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", name.split(":", maxsplit=1)[0]).strip("_")
    return cleaned if cleaned and not cleaned[0].isdigit() else f"input_{position}"


def tf_input_dtype(tf: Any, spec: TensorSpec) -> Any:
    """The dtype a traced signature gives a source input: float32 for float inputs (the
    converters quantize them), the input's own integer or bool dtype otherwise."""
    return tf.float32 if spec.is_float else tf.as_dtype(spec.dtype)
