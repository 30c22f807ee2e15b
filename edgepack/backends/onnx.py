"""ONNX int8 backend for generic CPUs: onnxruntime static quantization in QDQ format.

Steps: get a float ONNX model (a copy of an ONNX source, or tf2onnx's conversion of a Keras or
SavedModel source, checked against it); upgrade models below opset 13 (onnxruntime's
per-channel QDQ writes ``DequantizeLinear`` with ``axis``, which older opsets do not have) and
check the upgraded model still matches; run onnxruntime's quantization pre-processing (shape
inference and graph optimization), falling back to the un-processed model when it fails; then
``quantize_static`` in QDQ format with per-channel int8 weights, int8 or uint8 activations and
the profile's calibration method, fed from the calibration set by a ``CalibrationDataReader``.

Emulation: onnxruntime's CPU execution provider on two paths (:data:`PATHS`): with every graph
optimization, where QDQ groups are fused into int8 kernels whose arithmetic depends on the
CPU's instruction set (AVX2, AVX-512 VNNI and ARM dot-product kernels can answer differently),
and with none, where each QuantizeLinear/DequantizeLinear runs as written (the results
onnxruntime-web gives, the same on every CPU). Float inputs and outputs stay float32 (QDQ
models quantize inside the graph), so the app feeds float tensors; integer inputs (token ids,
masks) keep their dtype and are never quantized.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from edgepack._native import captured_output
from edgepack.appmeta import CONTRACT_KEY, AppDescription
from edgepack.backends.base import (
    BuiltModel,
    CalibrationData,
    Emulator,
    ExecutionPath,
    LayerCapture,
    ModelIO,
    TensorInfo,
    fixed_input_shapes,
    kept_artefact,
    pick_path,
    refuse_plan,
    require_numeric_inputs,
)
from edgepack.convert.compare import check_float_match
from edgepack.drift.layers import TensorPair
from edgepack.errors import ConversionError, UnloadableModelError
from edgepack.frontends.base import Feeds, Outputs, SourceModel, fixed_batch, run_in_batches
from edgepack.placement import Device, Placement
from edgepack.tune import Candidate, PrecisionPlan

PATHS = (
    ExecutionPath(
        "optimized",
        "onnxruntime CPU with every graph optimization: QDQ fused into int8 kernels chosen by "
        "the CPU's instruction set (what onnxruntime does by default on a device)",
    ),
    ExecutionPath(
        "unoptimized",
        "onnxruntime CPU with graph optimizations off: every QuantizeLinear/DequantizeLinear "
        "as written, the same on every CPU (onnxruntime-web gives these results)",
    ),
)

log = logging.getLogger("edgepack")

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
# What the calibration search tries after the profile's own choice, in this order.
SEARCHED_METHODS: tuple[tuple[str, float | None], ...] = (
    ("percentile", 99.999),
    ("percentile", 99.99),
    ("entropy", None),
    ("minmax", None),
)
ACTIVATION_DTYPES = ("int8", "uint8", "int16")  # int16: W8A16 (16-bit activations)
MODES = ("static", "dynamic")
INTEGER_OPS = ("MatMulInteger", "ConvInteger")
MIN_QDQ_OPSET = 13
FLOAT_TOLERANCE = 1e-3
CHECK_SAMPLES = 8


@dataclass(frozen=True)
class ONNXSettings:
    """``[settings]`` of an ONNX profile."""

    activation_dtype: str = "int8"
    calibration_method: str = "minmax"
    percentile: float = 99.999
    per_channel: bool = True
    opset: int = 17
    # 7-bit weights, for x86 CPUs without VNNI whose u8 x s8 kernels sum pairs of products in
    # 16 bits (VPMADDUBSW) and can saturate; see firmware-notes/cpu-onnx.md
    reduce_range: bool = False
    # static: activations calibrated into QDQ; dynamic: onnxruntime's quantize_dynamic, int8
    # weights of MatMul/Gemm (and Conv) with activation ranges computed at run time
    mode: str = "static"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.activation_dtype not in ACTIVATION_DTYPES:
            raise ValueError(f"activation_dtype must be one of {ACTIVATION_DTYPES}")
        if self.calibration_method not in CALIBRATION_METHODS:
            raise ValueError(
                f"calibration_method must be one of {', '.join(CALIBRATION_METHODS)}, "
                f"got {self.calibration_method!r}"
            )
        if not 50.0 < float(self.percentile) <= 100.0:
            raise ValueError(f"percentile must be in (50, 100], got {self.percentile!r}")
        if not isinstance(self.per_channel, bool):
            raise ValueError("per_channel must be true or false")
        if not isinstance(self.reduce_range, bool):
            raise ValueError("reduce_range must be true or false")
        if not isinstance(self.opset, int) or self.opset < MIN_QDQ_OPSET:
            raise ValueError(f"opset must be a whole number >= {MIN_QDQ_OPSET}")


class ONNXBackend:
    """Builds a QDQ ``model.onnx`` and runs it in onnxruntime."""

    name: str = "onnx"
    model_file_name: str = "model.onnx"
    settings_type: type = ONNXSettings

    def check_support(self, source: SourceModel, settings: ONNXSettings) -> None:
        require_numeric_inputs(source, "onnx int8")

    def describe(self, built: BuiltModel, app: AppDescription) -> BuiltModel:
        """The contract as JSON in ``metadata_props`` (``edgepack.contract``; onnxruntime's
        ``get_modelmeta().custom_metadata_map``), with name, version, author, licence and
        labels beside it, and the description as the model's ``doc_string``."""
        import onnx

        model = onnx.load(str(built.model_file))
        props = {
            CONTRACT_KEY: app.contract_json(),
            "name": app.name,
            "version": app.version,
            "author": app.author,
            "license": app.license,
        }
        if app.labels:
            props["labels"] = "\n".join(app.labels)
        kept = [p for p in model.metadata_props if p.key not in props]
        del model.metadata_props[:]
        model.metadata_props.extend(kept)
        for key, value in props.items():
            model.metadata_props.add(key=key, value=value)
        model.doc_string = app.description
        onnx.save(model, str(built.model_file))
        details = dict(built.details, metadata=f"metadata_props: {', '.join(props)}")
        return dataclasses.replace(built, details=details)

    def build(
        self,
        source: SourceModel,
        calibration: CalibrationData,
        settings: ONNXSettings,
        workdir: Path,
        plan: PrecisionPlan | None = None,
    ) -> BuiltModel:
        refuse_plan("onnx", plan, self.precisions(settings))
        check_batch = calibration.take(CHECK_SAMPLES)
        with tempfile.TemporaryDirectory(prefix="edgepack-onnx-") as scratch:
            folder = Path(scratch)
            float_model, names, details = _float_model(source, check_batch, settings, folder)
            prepared, details["preprocessing"] = _pre_process(float_model, folder)
            model_file = workdir / self.model_file_name
            kept_float = _nodes_kept_float(prepared, plan, source)
            mixed = (
                _mixed_range_outputs(prepared, calibration, names)
                if "int16" in self.precisions(settings)
                else {}
            )
            if mixed:
                details["mixed_range_outputs"] = mixed
            wide = [t for found in mixed.values() for t in found["int16_tensors"]]

            def quantize(excluded: Sequence[str]) -> None:
                if settings.mode == "dynamic":
                    _quantize_dynamic(prepared, model_file, settings, excluded)
                else:
                    reader = _Reader(calibration, names)
                    _quantize(prepared, model_file, reader, settings, plan, excluded, wide)

            refused = _quantize_until_loadable(quantize, prepared, kept_float)
            if refused:
                details["float_after_load_failure"] = refused
            details["float_size_bytes"] = float_model.stat().st_size
        details.update(_graph_details(model_file))
        if plan:
            details["precision"] = dict(plan.layers)
        inputs, outputs = _io_details(model_file, names, source)
        versions = {
            "onnx": metadata.version("onnx"),
            "onnxruntime": metadata.version("onnxruntime"),
        }
        if source.format != "onnx":
            versions["tf2onnx"] = metadata.version("tf2onnx")
            versions["tensorflow"] = source.versions.get("tensorflow", "")
        method = settings.calibration_method
        if method == "percentile":
            method = f"percentile ({settings.percentile})"
        if settings.mode == "dynamic":
            method = "none: activation ranges computed at run time (dynamic quantization)"
        return BuiltModel(model_file, inputs, outputs, versions, method, details)

    def places(self, settings: ONNXSettings) -> str:
        from edgepack.placement import ort_mobile, qnn

        return ", ".join([*sorted(qnn.SOC_IDS), *ort_mobile.DEVICES])

    def devices(self, names: Sequence[str], settings: ONNXSettings) -> list[Device]:
        """Qualcomm SoCs (onnxruntime's QNN EP), ``nnapi`` and ``coreml-ep`` (onnxruntime's
        mobile EPs' rules)."""
        from edgepack.placement import ort_mobile, qnn

        found = []
        for name in names:
            if qnn.knows(name):
                found.append(qnn.device(name))
            elif ort_mobile.knows(name):
                found.append(ort_mobile.device(name))
        return found

    def place(
        self,
        built: BuiltModel,
        devices: Sequence[Device],
        sample_shapes: Mapping[str, tuple[int, ...]],
        compile: bool,
        artefacts: Path | None = None,
    ) -> list[Placement]:
        """On the model with fixed input shapes, as a device runs it: the QNN EP's own
        validation (and compile) per Qualcomm SoC, onnxruntime's rules for NNAPI / Core ML."""
        from edgepack.placement import ort_mobile, qnn

        shapes = fixed_input_shapes(built.inputs, sample_shapes)
        placements = []
        for device in devices:
            if ort_mobile.knows(device.name):
                placements.append(ort_mobile.place(built.model_file, device, shapes))
                continue
            keep = None if artefacts is None else artefacts / f"{device.name}.onnx"
            placements.append(
                kept_artefact(qnn.place(built.model_file, device, shapes, compile, keep), keep)
            )
        return placements

    def precisions(self, settings: ONNXSettings) -> tuple[str, ...]:
        """16-bit activations (int8 weights) for chosen tensors, through onnxruntime's
        ``TensorQuantOverrides`` (the model then uses opset 21, whose QuantizeLinear has
        int16); then float, the nodes around a tensor left out (``nodes_to_exclude``).
        Dynamic quantization, and a profile whose activations are all 16-bit already, have no
        activation type to widen: float only."""
        if settings.mode == "dynamic" or settings.activation_dtype == "int16":
            return ("float",)
        return ("int16", "float")

    def calibration_candidates(self, settings: ONNXSettings) -> tuple[Candidate, ...]:
        """The profile's own choice, then onnxruntime's calibration methods (percentile at
        two levels, entropy, min-max), each with per-channel and per-tensor weights."""
        own = _choice(settings)
        choices = [own]
        if settings.mode == "dynamic":  # nothing is calibrated: only the weights' scales
            return tuple(
                Candidate(f"dynamic, {'per-channel' if per else 'per-tensor'} weights", change)
                for per, change in (
                    (settings.per_channel, {}),
                    (not settings.per_channel, {"per_channel": not settings.per_channel}),
                )
            )
        for method, percentile in SEARCHED_METHODS:
            for per_channel in (settings.per_channel, not settings.per_channel):
                choice = {"calibration_method": method, "per_channel": per_channel}
                if percentile is not None:
                    choice["percentile"] = percentile
                if choice not in choices:
                    choices.append(choice)
        return tuple(Candidate(_choice_name(c), {} if c == own else c) for c in choices)

    def paths(self, native: bool = False) -> tuple[ExecutionPath, ...]:
        from edgepack.hostcpu import int8_instruction_set

        optimized, unoptimized = PATHS
        here = f"; on this host: {int8_instruction_set()}"
        return (
            dataclasses.replace(optimized, description=optimized.description + here),
            unoptimized,
        )

    def emulate(
        self,
        model_file: Path,
        inputs: Sequence[TensorInfo],
        outputs: Sequence[TensorInfo],
        native: bool = False,  # the host runtime is the real one
        path: str | None = None,
    ) -> Emulator:
        from edgepack.hostcpu import int8_instruction_set

        chosen = pick_path(PATHS, path)
        session = _session(model_file, optimized=chosen.name == "optimized")

        def run_batch(feeds: Feeds) -> Outputs:
            values = session.run(
                [o.name for o in outputs],
                {i.name: np.asarray(feeds[i.source_name], i.dtype) for i in inputs},
            )
            return {o.source_name: np.asarray(v) for o, v in zip(outputs, values, strict=True)}

        def run(feeds: Feeds) -> Outputs:
            return run_in_batches(run_batch, feeds, fixed_batch(inputs))

        version = metadata.version("onnxruntime")
        details: dict[str, Any] = {"graph_optimization": chosen.name == "optimized"}
        if chosen.name == "optimized":
            details["instruction_set"] = int8_instruction_set()
        return Emulator(
            runtime=f"onnxruntime {version} (CPU execution provider, {chosen.name})",
            run=run,
            path=chosen.name,
            output_steps=_output_steps(model_file, outputs),
            details=details,
        )

    def model_io(self, model_file: Path) -> tuple[list[ModelIO], list[ModelIO]]:
        import onnx

        graph = onnx.load(str(model_file), load_external_data=False).graph
        constants = {t.name for t in graph.initializer}
        return (
            [_declared(v) for v in graph.input if v.name not in constants],
            [_declared(v) for v in graph.output],
        )

    def capture_layers(
        self,
        source: SourceModel,
        calibration: CalibrationData,
        model_file: Path,
        inputs: Sequence[TensorInfo],
        settings: ONNXSettings,
        feeds: Feeds,
    ) -> LayerCapture:
        """onnxruntime's QDQ debugging approach: the float model the bundle was quantized from
        (made again the same way) and the QDQ model, both with every node output added as a
        graph output; each float tensor is paired with the value the QDQ model's consumers see
        (after its QuantizeLinear/DequantizeLinear pair). A dynamically quantized model has no
        such pairs: its tensors are paired with the float model's of the same name."""
        import onnx
        from onnxruntime.quantization.qdq_loss_debug import (
            collect_activations,
            create_activation_matching,
            modify_model_output_intermediate_tensors,
        )

        with tempfile.TemporaryDirectory(prefix="edgepack-onnx-layers-") as scratch:
            folder = Path(scratch)
            float_model, _, _ = _float_model(
                source, calibration.take(CHECK_SAMPLES), settings, folder
            )
            prepared, _ = _pre_process(float_model, folder)
            activations = {}
            for kind, path in (("float", prepared), ("qdq", model_file)):
                augmented = folder / f"{kind}-all-outputs.onnx"
                with captured_output():
                    modify_model_output_intermediate_tensors(str(path), str(augmented))
                    activations[kind] = collect_activations(
                        str(augmented), _FeedReader(inputs, feeds)
                    )
            order, shapes = _node_order_and_shapes(prepared)
            twin = onnx.load(str(prepared)).graph
        if settings.mode == "dynamic":  # no QDQ pairs: the same tensor names in both models
            matched = {
                name: {"float": values, "post_qdq": activations["qdq"][name]}
                for name, values in activations["float"].items()
                if name in activations["qdq"]
            }
        else:
            matched = create_activation_matching(activations["qdq"], activations["float"])
        pairs = [
            TensorPair(
                name,
                _batch(values["float"], shapes.get(name)),
                _batch(values["post_qdq"], shapes.get(name)),
                order.get(name, len(order)),
            )
            for name, values in matched.items()
            if "float" in values and "post_qdq" in values
        ]
        return LayerCapture(
            pairs,
            "onnxruntime QDQ debugging: every float tensor of the float model against the same "
            "tensor after its QuantizeLinear/DequantizeLinear pair in the bundle's model",
            path="unoptimized",
            keep_float=None  # its layers' shares would need the float twin's MatMuls swapped in
            if settings.mode == "dynamic"
            else partial(_outputs_keeping_float, onnx.load(str(model_file)), twin, inputs, feeds),
        )


def _choice(settings: ONNXSettings) -> dict[str, Any]:
    choice: dict[str, Any] = {
        "calibration_method": settings.calibration_method,
        "per_channel": settings.per_channel,
    }
    if settings.calibration_method == "percentile":
        choice["percentile"] = float(settings.percentile)
    return choice


def _choice_name(choice: Mapping[str, Any]) -> str:
    method = choice["calibration_method"]
    if method == "percentile":
        method = f"percentile {choice['percentile']:g}"
    weights = "per-channel" if choice["per_channel"] else "per-tensor"
    return f"{method}, {weights} weights"


class _FeedReader:
    """``feeds`` one sample at a time, keyed by the model's input names (a calibration data
    reader, iterable as onnxruntime's ``collect_activations`` wants)."""

    def __init__(self, inputs: Sequence[TensorInfo], feeds: Feeds) -> None:
        total = len(next(iter(feeds.values())))
        self._samples = [
            {i.name: np.asarray(feeds[i.source_name][k : k + 1], i.dtype) for i in inputs}
            for k in range(total)
        ]
        self._next = iter(self._samples)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._next, None)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return iter(self._samples)


def _node_order_and_shapes(
    path: Path,
) -> tuple[dict[str, int], dict[str, tuple[int | None, ...]]]:
    """Each tensor's producing node position, and its inferred per-sample shape."""
    import onnx

    graph = onnx.shape_inference.infer_shapes(onnx.load(str(path))).graph
    order = {output: index for index, node in enumerate(graph.node) for output in node.output}
    shapes = {
        info.name: tuple(d.dim_value or None for d in info.type.tensor_type.shape.dim[1:])
        for info in [*graph.value_info, *graph.output]
    }
    return order, shapes


def _batch(per_sample: Sequence[np.ndarray], shape: tuple[int | None, ...] | None) -> np.ndarray:
    """Tensors saved one sample at a time (flattened by onnxruntime's debugging helper) as one
    batch, in the tensor's own shape where it is known."""
    flat = np.stack([np.asarray(v, np.float32).reshape(-1) for v in per_sample])
    if shape and all(shape) and int(np.prod(shape)) == flat.shape[1]:  # type: ignore[arg-type]
        return flat.reshape(len(flat), *shape)
    return flat


# ---------------------------------------------------------------------------- float model


def _float_model(
    source: SourceModel, batch: dict[str, np.ndarray], settings: ONNXSettings, folder: Path
) -> tuple[Path, dict[str, str], dict[str, Any]]:
    """A float ONNX file in ``folder`` (the user's file is never touched), with the map from
    its input names to the source's, and what happened on the way."""
    target = folder / "float.onnx"
    if source.format != "onnx":
        from edgepack.convert.tf_to_onnx import tensorflow_to_onnx

        names, error = tensorflow_to_onnx(source, batch, settings.opset, target)
        converted: dict[str, Any] = {"converted_from": source.format, "float_max_rel_error": error}
        _bound_mask_constants(source, target, batch, names, converted)
        return target, names, converted
    shutil.copyfile(source.path, target)
    details: dict[str, Any] = {"source_opset": _opset(target)}
    if details["source_opset"] < MIN_QDQ_OPSET:
        _upgrade_opset(target, MIN_QDQ_OPSET)
        errors = check_float_match(
            source.run(batch), _run_file(target, batch), FLOAT_TOLERANCE, "opset upgrade"
        )
        details["upgraded_to_opset"] = MIN_QDQ_OPSET
        details["float_max_rel_error"] = max(errors.values())
    names = {s.name: s.name for s in source.inputs}
    _bound_mask_constants(source, target, batch, names, details)
    return target, names, details


def _bound_mask_constants(
    source: SourceModel,
    target: Path,
    batch: dict[str, np.ndarray],
    names: dict[str, str],
    details: dict[str, Any],
) -> None:
    """Bound attention-mask constants (:mod:`edgepack.convert.mask_constants`) and check the
    float model still matches its source; recorded as ``details["mask_constants"]``."""
    from edgepack.convert.mask_constants import bound_mask_constants

    feeds = {onnx: batch[name] for onnx, name in names.items()}
    done = bound_mask_constants(target, feeds)
    if done is None:
        return
    converted = _run_file(target, feeds)
    errors = check_float_match(source.run(batch), converted, FLOAT_TOLERANCE, "mask bound")
    details["mask_constants"] = dict(done, float_max_rel_error=max(errors.values()))


def _opset(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def _upgrade_opset(path: Path, opset: int) -> None:
    import onnx
    from onnx import version_converter

    try:
        upgraded = version_converter.convert_version(onnx.load(str(path)), opset)
        onnx.checker.check_model(upgraded)
    except Exception as exc:
        text = " ".join(str(exc).split())[:200]
        raise ConversionError(
            f"cannot upgrade the model to opset {opset} for per-channel QDQ ({text})"
        ) from None
    onnx.save(upgraded, str(path))


def _session(path: Path, optimized: bool = True) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if not optimized:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _outputs_keeping_float(
    bundle: Any,
    twin: Any,
    inputs: Sequence[TensorInfo],
    feeds: Feeds,
    outputs: Sequence[TensorInfo],
    groups: Mapping[str, Sequence[str]],
) -> dict[str, Outputs]:
    """The QDQ ``bundle`` edited once per group (:func:`_keeping_float`), run with graph
    optimizations off like the per-layer capture."""
    return {
        name: _run_model(_keeping_float(bundle, twin, set(tensors)), inputs, outputs, feeds)
        for name, tensors in groups.items()
    }


def _keeping_float(model: Any, twin: Any, tensors: set[str]) -> Any:
    """A copy of the QDQ ``model`` in which the nodes producing ``tensors`` compute in float:
    their weight and bias inputs are the float ``twin``'s initializers instead of dequantized
    int8/int32 ones, and their outputs skip the QuantizeLinear/DequantizeLinear pair that
    follows (consumers read the float tensor). onnxruntime's quantizer folds a Relu or Clip
    into the QuantizeLinear that follows it; where the twin computes the tensor with one, it
    is put back. Everything else stays quantized."""
    import onnx

    edited = onnx.ModelProto()
    edited.CopyFrom(model)
    graph = edited.graph
    weights = {t.name: t for t in twin.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    for node in [producers[t] for t in tensors if t in producers]:
        _float_weights(graph, node, producers, weights)
    bypass = _bypassed_pairs(graph, tensors)
    for node in graph.node:
        for index, name in enumerate(node.input):
            if name in bypass:
                node.input[index] = bypass[name]
    graph_outputs = {o.name for o in graph.output}
    for dequantized, original in bypass.items():
        if dequantized in graph_outputs:  # keep the graph output's name
            for node in [n for n in graph.node if dequantized in n.output]:
                graph.node.remove(node)
            graph.node.append(onnx.helper.make_node("Identity", [original], [dequantized]))
    _restore_folded_activations(graph, twin, tensors, weights)
    _drop_unused(graph)
    return edited


def _float_weights(graph: Any, node: Any, producers: Mapping[str, Any], weights: Any) -> None:
    """Point ``node``'s dequantized constant inputs at the float twin's initializers."""
    constants = {t.name for t in graph.initializer}
    for index, name in enumerate(node.input):
        dequantize = producers.get(name)
        if dequantize is None or dequantize.op_type != "DequantizeLinear":
            continue
        stored = dequantize.input[0]
        original = stored.removesuffix("_quantized")
        if stored not in constants or original not in weights:
            continue  # an activation's DequantizeLinear: the input stays as quantized
        own = f"{original}__edgepack_float"
        if own not in constants:
            initializer = graph.initializer.add()
            initializer.CopyFrom(weights[original])
            initializer.name = own
            constants.add(own)
        node.input[index] = own


def _bypassed_pairs(graph: Any, tensors: set[str]) -> dict[str, str]:
    """DequantizeLinear output -> the float tensor its QuantizeLinear reads, for ``tensors``."""
    quantized = {
        node.output[0]: node.input[0]
        for node in graph.node
        if node.op_type == "QuantizeLinear" and node.input[0] in tensors
    }
    return {
        node.output[0]: quantized[node.input[0]]
        for node in graph.node
        if node.op_type == "DequantizeLinear" and node.input[0] in quantized
    }


def _restore_folded_activations(graph: Any, twin: Any, tensors: set[str], weights: Any) -> None:
    """Where the twin ends ``tensor`` with a Relu or Clip that the QDQ graph folded into a
    QuantizeLinear (the QDQ producer is another op), insert it again before the consumers."""
    import onnx

    own = {out: node for node in graph.node for out in node.output}
    constants = {t.name for t in graph.initializer}
    for node in twin.node:
        tensor = node.output[0]
        if node.op_type not in ("Relu", "Clip") or tensor not in tensors:
            continue
        if tensor not in own or own[tensor].op_type == node.op_type:
            continue
        raw = f"{tensor}__edgepack_unclipped"
        own[tensor].output[list(own[tensor].output).index(tensor)] = raw
        extra = [name for name in node.input[1:] if name]
        for name in extra:
            if name not in constants and name in weights:
                graph.initializer.add().CopyFrom(weights[name])
                constants.add(name)
        activation = onnx.helper.make_node(node.op_type, [raw, *node.input[1:]], [tensor])
        activation.attribute.extend(node.attribute)
        graph.node.append(activation)
    _sort_topologically(graph)


def _sort_topologically(graph: Any) -> None:
    """Nodes in an order where every input is produced before it is read."""
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            ordered.extend(pending)  # a cycle or an unknown input: onnxruntime will say
            break
        for node in ready:
            ordered.append(node)
            available.update(node.output)
            pending.remove(node)
    copies = [_node_copy(n) for n in ordered]
    del graph.node[:]
    graph.node.extend(copies)


def _node_copy(node: Any) -> Any:
    import onnx

    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    return copy


def _drop_unused(graph: Any) -> None:
    """Remove nodes whose outputs nothing reads (the bypassed Q/DQ pairs), repeatedly."""
    while True:
        read = {name for node in graph.node for name in node.input}
        read |= {o.name for o in graph.output}
        unused = [node for node in graph.node if not any(o in read for o in node.output)]
        if not unused:
            return
        for node in unused:
            graph.node.remove(node)


def _run_model(
    model: Any, inputs: Sequence[TensorInfo], outputs: Sequence[TensorInfo], feeds: Feeds
) -> Outputs:
    """``model`` (in memory) run with graph optimizations off, one sample at a time."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    names = [o.name for o in outputs]
    parts: dict[str, list[np.ndarray]] = {o.source_name: [] for o in outputs}
    for sample in _FeedReader(inputs, feeds):
        for info, value in zip(outputs, session.run(names, sample), strict=True):
            parts[info.source_name].append(np.asarray(value))
    return {name: np.concatenate(values) for name, values in parts.items()}


def _declared(value: Any) -> ModelIO:
    """A graph input or output: symbolic dimensions are -1, as the manifest records them."""
    from onnx import helper

    tensor = value.type.tensor_type
    shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim)
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type)).name
    return ModelIO(value.name, shape, dtype)


def _output_steps(model_file: Path, outputs: Sequence[TensorInfo]) -> dict[str, float]:
    """Per source output name, the scale of the DequantizeLinear that produces the graph
    output (one LSB of the int8 value it dequantizes), where there is one with a single
    scale."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(model_file), load_external_data=False)
    graph = model.graph
    constants = {t.name: t for t in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    steps = {}
    for info in outputs:
        node = producers.get(info.name)
        if node is None or node.op_type != "DequantizeLinear" or node.input[1] not in constants:
            continue
        scale = numpy_helper.to_array(constants[node.input[1]])
        if scale.size == 1:
            steps[info.source_name] = float(scale.reshape(()))
    return steps


def _run_file(path: Path, feeds: dict[str, np.ndarray]) -> Outputs:
    """``path`` run on ``feeds`` (keyed by its input names), in slices of a fixed batch."""
    from edgepack.frontends.onnx_model import tensor_spec

    session = _session(path)
    names = [o.name for o in session.get_outputs()]
    specs = [tensor_spec(i) for i in session.get_inputs()]

    def run(batch: Feeds) -> Outputs:
        values = session.run(names, {spec.name: batch[spec.name] for spec in specs})
        return dict(zip(names, values, strict=True))

    return run_in_batches(run, {s.name: feeds[s.name] for s in specs}, fixed_batch(specs))


def _pre_process(model: Path, folder: Path) -> tuple[Path, str]:
    """onnxruntime's quantization pre-processing (shape inference, graph optimization).

    Its symbolic shape inference fails on some real models (Paddle exports with dynamic
    height and width, for one): then it runs again without it, and when that fails too the
    model is quantized as it is. Verbose output says which.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    target = folder / "prepared.onnx"
    for skip_symbolic in (False, True):
        try:
            # its shape inference writes temporary files into the working directory
            with captured_output(), contextlib.chdir(folder):
                quant_pre_process(str(model), str(target), skip_symbolic_shape=skip_symbolic)
            if skip_symbolic:
                log.debug("quantization pre-processing ran without symbolic shape inference")
                return target, "without symbolic shape inference"
            return target, "full"
        except Exception as exc:
            text = " ".join(str(exc).split())[:200] or type(exc).__name__
            log.debug(
                "quantization pre-processing failed (skip_symbolic_shape=%s): %s",
                skip_symbolic,
                text,
            )
    log.debug("quantizing the model without pre-processing")
    _constants_to_initializers(model)
    return model, "failed: quantized as it is"


def _constants_to_initializers(path: Path) -> None:
    """Weights kept in Constant nodes are quantized like activations unless they are
    initializers: move them (the graph optimizer does this when pre-processing works)."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    kept = []
    for node in graph.node:
        value = next((a for a in node.attribute if a.name == "value"), None)
        if node.op_type == "Constant" and value is not None and len(node.attribute) == 1:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(value.t)
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
        else:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    onnx.save(model, str(path))


# ---------------------------------------------------------------------------- quantization


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over edgepack's calibration samples."""

    def __init__(self, calibration: CalibrationData, names: dict[str, str]) -> None:
        self._calibration = calibration
        self._names = names
        self._samples: Iterator[dict[str, np.ndarray]] | None = None

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._samples is None:
            self._samples = iter(self._calibration.samples())
        sample = next(self._samples, None)
        if sample is None:
            return None
        return {onnx: sample[name] for onnx, name in self._names.items()}

    def rewind(self) -> None:
        self._samples = None


def _quantize(
    model: Path,
    target: Path,
    reader: _Reader,
    settings: ONNXSettings,
    plan: PrecisionPlan | None = None,
    kept_float: Sequence[str] = (),
    int16_tensors: Sequence[str] = (),
) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def get_next(self) -> dict[str, np.ndarray] | None:
            return reader.get_next()

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }
    method = methods[settings.calibration_method]
    activation = {
        "int8": QuantType.QInt8,
        "uint8": QuantType.QUInt8,
        "int16": QuantType.QInt16,
    }[settings.activation_dtype]
    cache = None
    try:
        with captured_output():
            if settings.calibration_method == "entropy":
                cache = _entropy_ranges(model, Reader(), target.parent / ".calibration.json")
            quantize_static(
                str(model),
                str(target),
                None if cache else Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=settings.per_channel,
                reduce_range=settings.reduce_range,
                activation_type=activation,
                weight_type=QuantType.QInt8,
                calibrate_method=method,
                calibration_cache_path=cache,
                extra_options=_extra_options(settings, plan, int16_tensors),
                nodes_to_exclude=list(kept_float),
            )
    except Exception as exc:
        text = " ".join(str(exc).split())[:300]
        raise ConversionError(f"onnxruntime could not quantize the model: {text}") from None
    finally:
        if cache is not None:
            cache.unlink(missing_ok=True)
    _check_loadable(target)


def _quantize_dynamic(
    model: Path, target: Path, settings: ONNXSettings, kept_float: Sequence[str] = ()
) -> None:
    """onnxruntime's ``quantize_dynamic``: int8 weights, activations quantized per tensor at
    run time by DynamicQuantizeLinear (the documented first choice for transformers on CPUs)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    try:
        with captured_output():
            quantize_dynamic(
                str(model),
                str(target),
                per_channel=settings.per_channel,
                reduce_range=settings.reduce_range,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=list(kept_float),
                extra_options={"MatMulConstBOnly": True},
            )
    except Exception as exc:
        text = " ".join(str(exc).split())[:300]
        raise ConversionError(f"onnxruntime could not quantize the model: {text}") from None
    _check_loadable(target)


def _extra_options(
    settings: ONNXSettings, plan: PrecisionPlan | None, int16_tensors: Sequence[str] = ()
) -> dict[str, Any]:
    """quantize_static's extra options: the percentile, and the plan's int16 tensors (and
    ``int16_tensors``) as tensor overrides (onnxruntime then writes the model at opset 21)."""
    from onnxruntime.quantization import QuantType

    options: dict[str, Any] = {"CalibPercentile": float(settings.percentile)}
    wide = [*(plan.tensors_at("int16") if plan else []), *int16_tensors]
    if wide:
        options["TensorQuantOverrides"] = {t: [{"quant_type": QuantType.QInt16}] for t in wide}
    return options


MIXED_RANGE_SAMPLES = 64
_LAYOUT_OPS = ("Transpose", "Reshape", "Identity", "Squeeze", "Unsqueeze", "Flatten")


def _mixed_range_outputs(
    model: Path, calibration: CalibrationData, names: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Graph outputs that concatenate parts of very different ranges, found on calibration
    samples (:func:`edgepack.drift.channels.mixed_range_outputs`): per output, its channel
    axis, the ratio of its channels' ranges, and the tensors to give 16-bit activations: the
    output, the layout ops back to the Concat that joins the parts, and the Concat's inputs.
    Outputs with no such Concat are left to the drift check."""
    import onnx

    from edgepack.drift.channels import mixed_range_outputs

    batch = calibration.take(MIXED_RANGE_SAMPLES)
    outputs = _run_file(model, {onnx_name: batch[name] for onnx_name, name in names.items()})
    graph = onnx.load(str(model), load_external_data=False).graph
    producers = {out: node for node in graph.node for out in node.output}
    found = {}
    for name, (axis, ratio) in mixed_range_outputs(outputs).items():
        tensors = _back_to_concat(name, producers)
        if tensors:
            found[name] = {"axis": axis, "range_ratio": round(ratio, 1), "int16_tensors": tensors}
    return found


def _back_to_concat(output: str, producers: dict[str, Any]) -> list[str]:
    """``output``, the tensors of the layout ops back to the Concat producing its values, and
    that Concat's inputs; [] when something else computes them."""
    tensors, tensor = [output], output
    node = producers.get(tensor)
    while node is not None and node.op_type in _LAYOUT_OPS:
        tensor = node.input[0]
        tensors.append(tensor)
        node = producers.get(tensor)
    if node is None or node.op_type != "Concat":
        return []
    return tensors + [name for name in node.input if name in producers]


def _nodes_kept_float(model: Path, plan: PrecisionPlan | None, source: SourceModel) -> list[str]:
    """Names of the nodes ``plan`` keeps float: every node of a float layer (its tensors,
    and every node output that names the layer: a Conv whose Relu the layer capture saw
    fused) and the nodes that read their outputs. A QDQ model quantizes a tensor wherever a
    quantized node reads or writes it, so a layer's values stay float only when its nodes
    and its readers are all left out."""
    if not plan or not plan.tensors_at("float"):
        return []
    import onnx

    from edgepack.drift.layers import source_layer

    layers = {layer for layer, p in plan.layers.items() if p == "float"}
    graph = onnx.load(str(model), load_external_data=False).graph
    wanted = set(plan.tensors_at("float")) | {
        out
        for node in graph.node
        for out in node.output
        if source_layer(out, source.layers, source.tensor_layers) in layers
    }
    return sorted(
        node.name for node in graph.node if wanted & set(node.output) or wanted & set(node.input)
    )


# quantize_static builds its entropy calibrator with 128 histogram bins for 128 quantized
# bins, which leaves the KL search nothing to choose: the ranges equal min-max (measured
# here: byte-identical models). Collect a 2048-bin histogram, as TensorRT's entropy
# calibration does, and hand the ranges to quantize_static through its calibration cache.
ENTROPY_BINS = 2048
ENTROPY_QUANTIZED_BINS = 128


def _entropy_ranges(model: Path, reader: Any, cache: Path) -> Path:
    from onnxruntime.quantization import CalibrationMethod, create_calibrator
    from onnxruntime.quantization.calibrate import TensorsData, save_tensors_data

    calibrator = create_calibrator(
        model,
        None,
        augmented_model_path=str(cache.with_suffix(".augmented.onnx")),
        calibrate_method=CalibrationMethod.Entropy,
        extra_options={
            "num_bins": ENTROPY_BINS,
            "num_quantized_bins": ENTROPY_QUANTIZED_BINS,
            "symmetric": False,
        },
    )
    try:
        calibrator.collect_data(reader)
        collector = calibrator.collector
        thresholds = {
            tensor: (*entropy_threshold(histogram, collector.num_quantized_bins), *histogram[:2])
            for tensor, histogram in collector.histogram_dict.items()
        }
        save_tensors_data(TensorsData(CalibrationMethod.Entropy, thresholds), cache)
    finally:
        cache.with_suffix(".augmented.onnx").unlink(missing_ok=True)
    return cache


def entropy_threshold(histogram: Any, num_quantized_bins: int) -> tuple[Any, Any]:
    """onnxruntime's ``HistogramCollector.get_entropy_threshold``, step for step, with its
    per-bin Python loops as NumPy array operations: the same thresholds (the tests compare
    them exactly), about ten times faster. Its KL search over a 2048-bin histogram spent 0.55 s
    per tensor in Python ``sum``: 240 of the 280 s of a calibration search on a 21-tensor
    model (measured). ``histogram``: (counts, edges, min, max) as the collector keeps it."""
    from onnxruntime.quantization.calibrate import entropy
    from onnxruntime.quantization.quant_utils import smooth_distribution

    hist, edges = histogram[0], histogram[1]
    num_bins = hist.size
    zero_bin = num_bins // 2
    half = num_quantized_bins // 2
    dtype = edges.dtype
    divergences = np.zeros(zero_bin - half + 1)
    thresholds = []
    cumulative = np.concatenate([[0], np.cumsum(hist)])
    for i in range(half, zero_bin + 1):
        start, end = zero_bin - i, min(zero_bin + i + 1, num_bins)
        thresholds.append((edges[start], edges[end]))
        sliced = hist[start:end]
        p = sliced.copy()
        p[0] += cumulative[start]  # the outliers on each side land in the end bins
        p[-1] += cumulative[num_bins] - cumulative[end]
        nonzeros = (p != 0).astype(np.int64)
        merged = sliced.size // num_quantized_bins
        whole = num_quantized_bins * merged
        quantized = sliced[:whole].reshape(num_quantized_bins, merged).sum(axis=1)
        quantized = quantized.astype(np.int64)
        quantized[-1] += sliced[whole:].sum()
        norm = nonzeros[:whole].reshape(num_quantized_bins, merged).sum(axis=1)
        # the reference assigns quantized / norm (a float) into an int64 array: truncated
        expanded = np.where(norm != 0, quantized / np.where(norm == 0, 1, norm), 0)
        q = np.zeros(p.size, dtype=np.int64)
        q[:whole] = np.repeat(expanded.astype(np.int64), merged)
        p_smooth, q_smooth = smooth_distribution(p), smooth_distribution(q)
        if p_smooth is None or q_smooth is None:
            divergences[i - half] = np.array(np.inf, dtype=dtype)
        else:
            divergences[i - half] = np.array(entropy(p_smooth, q_smooth), dtype=dtype)
    low, high = thresholds[int(np.argmin(divergences))]
    low = max(low, histogram[2])
    high = min(high, histogram[3])
    return low, high


LOAD_RETRIES = 3
_NAMED_NODE = re.compile(r"[Nn]ode \(([^)]+)\)|node with name '([^']+)'|node name: ?(\S+)")


def _check_loadable(path: Path) -> None:
    try:
        _session(path)
    except Exception as exc:
        text = " ".join(str(exc).split())
        found = _NAMED_NODE.search(text)
        node = next((g for g in found.groups() if g), None) if found else None
        raise UnloadableModelError(
            f"onnxruntime wrote a quantized model it cannot load: {text[:300]}", node
        ) from None


def _quantize_until_loadable(
    quantize: Callable[[Sequence[str]], None], model: Path, kept_float: Sequence[str]
) -> list[str]:
    """Run ``quantize`` (with the nodes to leave float); when onnxruntime cannot load what
    it wrote and its error names a node of ``model``, quantize again with that node float, at
    most :data:`LOAD_RETRIES` times. Returns the nodes left float that way."""
    import onnx

    nodes = {node.name for node in onnx.load(str(model), load_external_data=False).graph.node}
    refused: list[str] = []
    while True:
        try:
            quantize([*kept_float, *refused])
            return refused
        except UnloadableModelError as exc:
            node = _float_node(exc.node, nodes)
            if node is None or node in refused or len(refused) == LOAD_RETRIES:
                raise
            log.info(
                "onnxruntime cannot load the quantized %s; quantizing again with it float", node
            )
            refused.append(node)


def _float_node(named: str | None, nodes: set[str]) -> str | None:
    """The float model's node behind a node name from the quantized model (a Q/DQ node is
    named after its tensor, ``<tensor>_QuantizeLinear``: not a node to leave float)."""
    if named is None:
        return None
    return named if named in nodes else None


def _graph_details(path: Path) -> dict[str, Any]:
    """Op counts, and the op types onnxruntime will run in float: ops with a float input that
    does not come from a ``DequantizeLinear`` (shape arithmetic on int64 does not count)."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    graph = model.graph
    floats = {
        v.name
        for v in [*graph.value_info, *graph.input, *graph.output]
        if v.type.tensor_type.elem_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    }
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    float_ops = {
        node.op_type
        for node in graph.node
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear")
        and any(name in floats and name not in dequantized for name in node.input)
    }
    ops = Counter(node.op_type for node in graph.node)
    return {
        "ops": dict(sorted(ops.items())),
        "float_ops": sorted(float_ops),
        "precision_counts": _precision_counts(graph, floats, dequantized),
    }


def _precision_counts(graph: Any, floats: set[str], dequantized: set[str]) -> dict[str, int]:
    """Compute ops (not Q/DQ, not shape arithmetic) by the precision they compute in: the
    widest integer type their activations are dequantized from, or float when one of their
    float inputs comes from no DequantizeLinear."""
    import onnx

    constants = {t.name for t in graph.initializer}
    widths = {}
    for node in graph.node:
        if node.op_type == "DequantizeLinear":
            widths[node.output[0]] = node.input[0]
    types = {
        v.name: v.type.tensor_type.elem_type
        for v in [*graph.value_info, *graph.input, *graph.output]
    }
    types.update({t.name: t.data_type for t in graph.initializer})
    wide = {onnx.TensorProto.INT16, onnx.TensorProto.UINT16}
    counts = {"int8": 0, "int16": 0, "float": 0}
    for node in graph.node:
        if node.op_type in INTEGER_OPS:  # dynamic quantization's integer kernels
            counts["int8"] += 1
            continue
        if node.op_type in ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"):
            continue
        activations = [n for n in node.input if n in floats and widths.get(n) not in constants]
        if not activations:
            continue  # shape arithmetic, or an op on constants only
        if any(name not in dequantized for name in activations):
            counts["float"] += 1
        elif any(types.get(widths[name]) in wide for name in activations):
            counts["int16"] += 1
        else:
            counts["int8"] += 1
    return counts


def _io_details(
    path: Path, names: dict[str, str], source: SourceModel
) -> tuple[list[TensorInfo], list[TensorInfo]]:
    from edgepack.frontends.onnx_model import tensor_spec

    session = _session(path)
    inputs = [
        TensorInfo(i.name, names[i.name], _shape(i.shape), tensor_spec(i).dtype, index=position)
        for position, i in enumerate(session.get_inputs())
    ]
    source_outputs = {o.name for o in source.outputs}
    outputs = [
        TensorInfo(o.name, o.name, _shape(o.shape), "float32", index=position)
        for position, o in enumerate(session.get_outputs())
        if o.name in source_outputs
    ]
    return inputs, outputs


def _shape(shape: Sequence[Any]) -> tuple[int, ...]:
    """Dynamic axes are written as -1 in the manifest (their size is set by the app)."""
    return tuple(d if isinstance(d, int) else -1 for d in shape)
