"""Keras layers traced, for the converters, in forms with the same float results that
quantize well: what each rewrite replaces, and why, is in its docstring.

The float reference (the frontend's runner) always runs the layers as written; the converted
float model is checked against it before quantizing, so a rewrite that changed a result would
fail the build rather than ship.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

MASK_MARGIN = 30.0  # exp(-30) ~ 1e-13: below float32's resolution next to 1


@contextmanager
def quantizable_forms(model: Any) -> Iterator[None]:
    """While ``model`` is traced: exact GELU in its erf form, masked softmax and masked
    attention logits with a bounded fill value, layer normalization without a negated mean,
    masked average pooling as a ratio of means."""
    import keras

    with ExitStack() as stack:
        stack.enter_context(_erf_gelu(model))
        for layer_class, key, replacement in (
            (keras.layers.Softmax, "softmax", _bounded_masked_softmax),
            (keras.layers.LayerNormalization, "layer_norm", _centered_layer_norm),
            (keras.layers.GlobalAveragePooling1D, "average_1d", _masked_average_as_means),
        ):
            _ORIGINAL.setdefault(key, layer_class.call)
            stack.enter_context(_patched(layer_class, "call", replacement))
        stack.enter_context(_patched(_tf_nn(), "_apply_masks", _bounded_attention_masks))
        yield


@contextmanager
def _erf_gelu(model: Any) -> Iterator[None]:
    """Exact GELU as ``0.5 * x * (1 + erf(x / sqrt(2)))``, equal to Keras'
    ``0.5 * x * erfc(-x / sqrt(2))`` to float32 rounding. The erf form is the one the converters
    know: the TFLite converter fuses it into its GELU op (which has int8 kernels), ONNX has Erf
    but no Erfc, Core ML has erf; the erfc form left NEG in float in TFLite and an ``Erfc``
    node ONNX cannot load."""
    import keras

    swapped = [
        layer
        for layer in _layers(model)
        if getattr(layer, "activation", None) is keras.activations.gelu
    ]
    for layer in swapped:
        layer.activation = _gelu_erf_form
    try:
        yield
    finally:
        for layer in swapped:
            layer.activation = keras.activations.gelu


def _gelu_erf_form(x: Any) -> Any:
    import keras

    return 0.5 * x * (1.0 + keras.ops.erf(x * 0.7071067811865476))


def _bounded_masked_softmax(self: Any, inputs: Any, mask: Any = None) -> Any:
    """Keras fills masked logits with -1e9 before its softmax (MultiHeadAttention's attention
    mask). A quantizer calibrating those logits sees a range of 1e9, and every real logit gets
    the same int8 value: attention turns uniform. Here the fill is the row's smallest logit
    minus :data:`MASK_MARGIN`, so a masked position weighs at most exp(-30) of the largest
    unmasked one (zero in float32) and the logits' range grows by 30 only."""
    import keras

    ops = keras.ops
    if mask is None:
        return _ORIGINAL["softmax"](self, inputs)
    if keras.backend.standardize_dtype(mask.dtype) != "bool":
        mask = ops.greater(mask, ops.cast(0.5, mask.dtype))
    axis = self.axis
    fill = ops.min(inputs, axis=axis, keepdims=True) - MASK_MARGIN
    outputs = _ORIGINAL["softmax"](self, ops.where(mask, inputs, fill))
    return ops.where(mask, outputs, 0.0)  # a row masked whole gives zeros, as Keras does


def _bounded_attention_masks(logits: Any, mask: Any, is_causal: bool) -> Any:
    """MultiHeadAttention (through ``ops.dot_product_attention``) fills masked logits with
    -0.7 * float32 max: the same fill as :func:`_bounded_masked_softmax` instead."""
    import tensorflow as tf

    if mask is None and not is_causal:
        return logits
    keep = tf.ones_like(logits, dtype="bool")
    if mask is not None:
        keep = tf.logical_and(keep, mask)
    if is_causal:
        shape = tf.shape(logits)
        causal = tf.linalg.band_part(tf.ones((shape[2], shape[3]), "bool"), -1, 0)
        keep = tf.logical_and(keep, causal[None, None, :, :])
    fill = tf.reduce_min(logits, axis=-1, keepdims=True) - MASK_MARGIN
    return tf.where(keep, logits, fill)


def _tf_nn() -> Any:
    from keras.src.backend.tensorflow import nn

    return nn


def _centered_layer_norm(self: Any, inputs: Any) -> Any:
    """Keras computes ``x * inv + (-mean * inv + beta)``; TFLite has no int8 kernel for that
    NEG and leaves it float (a CPU op on the NPU profile). ``(x - mean) * rsqrt(var + eps)``
    then gamma and beta is the same normalization with SUB, MUL and RSQRT, all int8."""
    import keras

    ops = keras.ops
    if self.rms_scaling or self.axis not in (-1, [-1], (-1,), len(inputs.shape) - 1):
        return _ORIGINAL["layer_norm"](self, inputs)
    x = ops.cast(inputs, "float32")
    centered = x - ops.mean(x, axis=-1, keepdims=True)
    variance = ops.mean(ops.square(centered), axis=-1, keepdims=True)
    outputs = centered * ops.rsqrt(variance + self.epsilon)
    if self.gamma is not None:
        outputs = outputs * ops.cast(self.gamma, "float32")
    if self.beta is not None:
        outputs = outputs + ops.cast(self.beta, "float32")
    return ops.cast(outputs, self.compute_dtype)


def _masked_average_as_means(self: Any, inputs: Any, mask: Any = None) -> Any:
    """Keras averages masked steps as ``sum(x) / sum(mask)``. LiteRT's int8 SUM is wrong on
    its reference kernels (a sum of ten ones gave 16, the top of its range; the optimized
    kernel gave 9.98), and its int8 DIV stops when the divisor quantizes to its zero point.
    ``mean(x) / max(mean(mask), 1 / steps)`` is the same ratio with MEAN, whose int8 kernels
    agree, and a divisor that never reaches zero (a row masked whole gives 0, not NaN)."""
    import keras

    ops = keras.ops
    if mask is None:
        return _ORIGINAL["average_1d"](self, inputs)
    steps_axis = 1 if self.data_format == "channels_last" else 2
    expanded = ops.cast(ops.expand_dims(mask, 2 if steps_axis == 1 else 1), "bool")
    kept = ops.where(expanded, inputs, 0)
    share = ops.mean(ops.cast(expanded, inputs.dtype), axis=steps_axis, keepdims=self.keepdims)
    floor = 1.0 / float(inputs.shape[steps_axis] or 1)
    mean = ops.mean(kept, axis=steps_axis, keepdims=self.keepdims)
    return mean / ops.maximum(share, floor)


_ORIGINAL: dict[str, Any] = {}


@contextmanager
def _patched(owner: Any, name: str, replacement: Any) -> Iterator[None]:
    original = getattr(owner, name)
    setattr(owner, name, replacement)
    try:
        yield
    finally:
        setattr(owner, name, original)


def _layers(model: Any) -> Iterator[Any]:
    for layer in getattr(model, "layers", []):
        yield layer
        yield from _layers(layer)
