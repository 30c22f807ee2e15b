"""Per-layer drift: the quantized model's intermediate tensors against the float model's.

Every backend compares its bundle with a *float twin* in the same format, built from the same
source (a float TFLite model, the float ONNX model before quantization, an fp32 Core ML
program), so that both models have the same tensors under the same names. A backend hands
over :class:`TensorPair` values; this module names each pair after the source model's layer
(:func:`source_layer`), keeps one tensor per layer (the last one in execution order: the
layer's output, after any fused activation), measures SQNR and cosine, and sorts worst
first. Source layers that no tensor maps to (folded batch norms, dropout, fused activations
without a tensor of their own) are listed as unmatched, never paired with a guess.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgepack.drift.metrics import cosine_similarity, sqnr_db


@dataclass(frozen=True)
class TensorPair:
    """One intermediate tensor of the quantized model and the float twin's same tensor
    (batch axis first, dequantized to float), in execution order."""

    tensor: str
    reference: np.ndarray
    quantized: np.ndarray
    order: int


@dataclass(frozen=True)
class LayerDrift:
    layer: str  # as named in the source model (or the tensor name where no layer matches)
    tensor: str  # the compared tensor of the bundle's model
    shape: tuple[int, ...]
    sqnr_db: float
    cosine: float
    order: int
    # output min-SQNR recovered when only this layer is kept in float (None: not measured)
    contribution_db: float | None = None


@dataclass(frozen=True)
class LayerReport:
    """Per-layer drift, worst first, and how the tensors were matched."""

    layers: list[LayerDrift]
    unmatched: list[str]
    samples: int
    matching: str
    extra: dict[str, Any] = field(default_factory=dict)
    path: str = ""  # the execution path the bundle's model ran on
    # how contributions were measured, or why they were not
    contributions: str = ""

    def by_contribution(self) -> list[LayerDrift]:
        """Layers with a measured contribution, largest first (the culprits first)."""
        measured = [d for d in self.layers if d.contribution_db is not None]
        return sorted(measured, key=lambda d: (-(d.contribution_db or 0.0), d.order))

    @property
    def worst(self) -> LayerDrift | None:
        return self.layers[0] if self.layers else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "matching": self.matching,
            "path": self.path,
            "layers": [
                {
                    "layer": d.layer,
                    "tensor": d.tensor,
                    "shape": list(d.shape),
                    "sqnr_db": d.sqnr_db,
                    "cosine": d.cosine,
                    "order": d.order,
                    "contribution_db": d.contribution_db,
                }
                for d in self.layers
            ],
            "contributions": self.contributions,
            "by_contribution": [d.layer for d in self.by_contribution()],
            "unmatched_layers": list(self.unmatched),
        }


def source_layer(
    tensor: str, layers: Sequence[str], tensor_layers: Mapping[str, str] | None = None
) -> str | None:
    """The source layer a target tensor belongs to, or None.

    An exact entry of ``tensor_layers`` wins (ONNX node outputs keep their names through
    quantization). Otherwise the layer names are looked for in the tensor's first op name
    (``model_1/conv1_1/Relu;...`` in TFLite, ``model_1_conv1_1_Relu_cast_fp16`` in Core ML):
    as a whole path component, with the ``_N`` suffix TensorFlow's name scopes add preferred,
    the longest layer name first (``conv2d_1`` before ``conv2d``).
    """
    if tensor_layers and tensor in tensor_layers:
        return tensor_layers[tensor]
    for suffix in (re.escape("_") + r"\d+", ""):
        for layer in sorted(layers, key=len, reverse=True):
            first_op = tensor.split(";", maxsplit=1)[0]
            pattern = rf"(?:^|[/_:]){re.escape(layer)}{suffix}(?=[/_:]|$)"
            if re.search(pattern, first_op):
                return layer
    return None


def layer_report(
    pairs: Sequence[TensorPair],
    layers: Sequence[str],
    tensor_layers: Mapping[str, str] | None,
    matching: str,
    extra: Mapping[str, Any] | None = None,
    path: str = "",
) -> LayerReport:
    """Name, deduplicate, measure and rank ``pairs`` (see the module docstring)."""
    by_layer: dict[str, TensorPair] = {}
    for pair in sorted(pairs, key=lambda p: p.order):
        name = source_layer(pair.tensor, layers, tensor_layers) or pair.tensor
        by_layer[name] = pair  # the last tensor of a layer is its output
    measured = [
        LayerDrift(
            layer=name,
            tensor=pair.tensor,
            shape=tuple(int(d) for d in pair.quantized.shape[1:]),
            sqnr_db=sqnr_db(pair.reference, pair.quantized),
            cosine=cosine_similarity(pair.reference, pair.quantized),
            order=pair.order,
        )
        for name, pair in by_layer.items()
    ]
    measured.sort(key=lambda d: (d.sqnr_db, d.order))
    samples = len(pairs[0].reference) if pairs else 0
    unmatched = [layer for layer in layers if layer not in by_layer]
    return LayerReport(measured, unmatched, samples, matching, dict(extra or {}), path)


def layer_tensors(
    pairs: Sequence[TensorPair], layers: Sequence[str], tensor_layers: Mapping[str, str] | None
) -> dict[str, list[str]]:
    """Every compared tensor of each layer (named as :func:`layer_report` names them), in
    execution order: what "keeping the layer in float" keeps."""
    grouped: dict[str, list[str]] = {}
    for pair in sorted(pairs, key=lambda p: p.order):
        name = source_layer(pair.tensor, layers, tensor_layers) or pair.tensor
        grouped.setdefault(name, []).append(pair.tensor)
    return grouped


def with_contributions(
    report: LayerReport,
    reference: Mapping[str, np.ndarray],
    kept_float: Mapping[str, Mapping[str, np.ndarray]],
    baseline: Mapping[str, np.ndarray],
    how: str,
) -> LayerReport:
    """``report`` with each layer's own contribution: the min output SQNR (against the float
    ``reference``) when only that layer is kept in float (``kept_float[layer]``) minus the
    bundle's own (``baseline``), on the same samples and execution path."""
    from dataclasses import replace

    def min_sqnr(outputs: Mapping[str, np.ndarray]) -> float:
        return min(sqnr_db(reference[name], outputs[name]) for name in reference)

    base = min_sqnr(baseline)
    layers = [
        replace(d, contribution_db=round(min_sqnr(kept_float[d.layer]) - base, 3))
        if d.layer in kept_float
        else d
        for d in report.layers
    ]
    return replace(report, layers=layers, contributions=how)


def stack_samples(per_sample: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Tensors captured one sample at a time -> one batch per tensor name (names present in
    every sample only)."""
    if not per_sample:
        return {}
    names = set(per_sample[0]).intersection(*per_sample[1:])
    return {
        name: np.concatenate([np.asarray(s[name], np.float32) for s in per_sample])
        for name in names
    }
