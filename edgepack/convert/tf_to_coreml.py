"""Keras / SavedModel -> Core ML ML program with coremltools (fixed input shapes)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from edgepack._native import captured_output, import_coremltools, import_tensorflow
from edgepack.errors import ConversionError
from edgepack.frontends.base import SourceModel
from edgepack.frontends.tf_call import signature_name, tf_callable, tf_input_dtype

PRECISIONS = ("fp32", "fp16")
TARGETS = {15: "iOS15", 16: "iOS16", 17: "iOS17", 18: "iOS18"}


def tensorflow_to_coreml(
    source: SourceModel,
    input_shapes: Mapping[str, tuple[int, ...]],
    precision: str = "fp16",
    ios: int = 17,
    image_inputs: Mapping[str, Mapping[str, Any]] | None = None,
    class_labels: Sequence[str] | None = None,
) -> Any:
    """Convert a TF-based source traced with batch 1 and ``input_shapes`` (per sample).

    Returns the ``MLModel`` (not saved); its inputs are named like the source's inputs
    (made valid identifiers) and its outputs keep the source output names. ``image_inputs``
    maps a source input name to ``{"color", "scale", "bias"}``: that input becomes a Core ML
    image input (the app passes a pixel buffer; the model computes ``scale * pixel + bias``).
    With ``class_labels`` (a one-output classifier) the model gets Core ML's classifier outputs:
    ``classLabel`` and ``<output>_probs``, a {label: probability} dictionary.
    """
    ct = import_coremltools()
    _register_cast_to_bool()

    tf = import_tensorflow()
    names = [signature_name(s.name, i) for i, s in enumerate(source.inputs)]
    specs = [
        tf.TensorSpec((1, *input_shapes[s.name]), tf_input_dtype(tf, s), name=name)
        for name, s in zip(names, source.inputs, strict=True)
    ]
    function = tf.function(tf_callable(source), input_signature=specs).get_concrete_function()
    try:
        with captured_output():
            model = ct.convert(
                [function],
                source="tensorflow",
                convert_to="mlprogram",
                inputs=[
                    _input_type(ct, spec, (image_inputs or {}).get(tensor.name))
                    for spec, tensor in zip(specs, source.inputs, strict=True)
                ],
                classifier_config=None
                if class_labels is None
                else ct.ClassifierConfig(list(class_labels), predicted_feature_name=CLASS_LABEL),
                compute_precision=ct.precision.FLOAT16
                if precision == "fp16"
                else ct.precision.FLOAT32,
                minimum_deployment_target=getattr(ct.target, TARGETS[ios]),
            )
    except Exception as exc:
        text = " ".join(str(exc).split())
        ops = sorted(set(re.findall(r"TF op '(\w+)' not implemented", text)))
        if ops:
            raise ConversionError(
                f"coremltools cannot convert TF op(s) {', '.join(ops)} to Core ML"
            ) from None
        raise ConversionError(f"coremltools could not convert the model: {text[:300]}") from None
    names = sorted(o.name for o in source.outputs)
    if class_labels is not None:
        names = [CLASS_LABEL, f"{names[0]}_probs"]
    return _named_outputs(model, names)


_CAST_TO_BOOL: list[Any] = []


def _register_cast_to_bool() -> None:
    """coremltools' TF ``Cast`` refuses bool as a destination ("Provided destination type bool
    not supported"), the cast a Keras attention mask goes through (MultiHeadAttention's
    ``attention_mask``): register a ``Cast`` that makes it ``not_equal(x, 0)`` and leaves
    every other cast to coremltools' own translation. Done once per process."""
    if _CAST_TO_BOOL:
        return
    from coremltools.converters.mil import Builder as mb  # noqa: N813 (coremltools idiom)
    from coremltools.converters.mil.frontend.tensorflow import ops
    from coremltools.converters.mil.frontend.tensorflow.tf_op_registry import register_tf_op
    from coremltools.converters.mil.mil import types

    coremltools_cast = ops.Cast

    def Cast(context: Any, node: Any) -> None:  # noqa: N802 (the TF op's name)
        if node.attr["DstT"] != types.bool:
            coremltools_cast(context, node)
            return
        x = context[node.inputs[0]]
        zero = 0.0 if types.is_float(x.dtype) else 0
        context.add(node.name, mb.not_equal(x=x, y=zero, name=node.name))

    register_tf_op(Cast, override=True)
    _CAST_TO_BOOL.append(Cast)


CLASS_LABEL = "classLabel"
COLOR_LAYOUTS = {"RGB": "RGB", "BGR": "BGR", "GRAY": "GRAYSCALE"}


def _input_type(ct: Any, spec: Any, image: Mapping[str, Any] | None) -> Any:
    shape = tuple(spec.shape)
    if image is None:
        return ct.TensorType(name=spec.name, shape=shape)
    return ct.ImageType(
        name=spec.name,
        shape=shape,
        scale=float(image["scale"]),
        bias=[float(b) for b in image["bias"]],
        color_layout=getattr(ct.colorlayout, COLOR_LAYOUTS[image["color"]]),
    )


def _named_outputs(model: Any, names: list[str]) -> Any:
    """TF graphs name their outputs ``Identity``, ``Identity_1`` ...; tf.nest orders a dict of
    outputs by key, so output i is the i-th source output name in sorted order."""
    ct = import_coremltools()

    spec = model.get_spec()
    current = [o.name for o in spec.description.output]
    if current == names:
        return model
    for old, new in zip(current, names, strict=True):
        ct.utils.rename_feature(spec, old, new)
    return ct.models.MLModel(spec, weights_dir=model.weights_dir, skip_model_load=True)
