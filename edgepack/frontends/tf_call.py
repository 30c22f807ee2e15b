"""Calling TensorFlow-based sources (Keras models, SavedModels) from traced functions."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from edgepack.frontends.base import SourceModel, TensorSpec


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
            with erf_gelu(model):
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


@contextmanager
def erf_gelu(model: Any) -> Iterator[None]:
    """While a Keras model is traced for a converter, its exact GELU activations compute
    ``0.5 * x * (1 + erf(x / sqrt(2)))``, equal to Keras' ``0.5 * x * erfc(-x / sqrt(2))``
    to float32 rounding. The erf form is the one the converters know: the TFLite converter
    fuses it into its GELU op (which has int8 kernels), ONNX has Erf but no Erfc, Core ML has
    erf; the erfc form left NEG in float in TFLite and an ``Erfc`` node ONNX cannot load."""
    import keras

    swapped = []
    for layer in _layers(model):
        if getattr(layer, "activation", None) is keras.activations.gelu:
            swapped.append(layer)
            layer.activation = _gelu_erf_form
    try:
        yield
    finally:
        for layer in swapped:
            layer.activation = keras.activations.gelu


def _gelu_erf_form(x: Any) -> Any:
    import keras

    return 0.5 * x * (1.0 + keras.ops.erf(x * 0.7071067811865476))


def _layers(model: Any) -> Iterator[Any]:
    for layer in getattr(model, "layers", []):
        yield layer
        yield from _layers(layer)
