"""TFLite full-integer backend for Android NPUs (NNAPI-style and vendor delegates).

Conversion: TensorFlow's ``TFLiteConverter`` on a concrete function with a fixed input shape
(NPU delegates want static shapes), ``Optimize.DEFAULT`` and a representative dataset drawn
from the calibration set. That gives per-channel int8 weights, int8 activations and, with
``TFLITE_BUILTINS_INT8`` only, a model whose every op is integer. The inputs and outputs are
int8 or uint8 as the profile says.

Emulation: the LiteRT interpreter (``ai-edge-litert``) on each of its host execution paths
(:data:`PATHS`): built-in kernels without delegate, XNNPACK (LiteRT's default CPU delegate, the
path most Android apps run) and the reference kernels (whose results TFLite Micro reproduces).
Their int8 arithmetic differs (rounding, accumulation order), so outputs can differ by tens of
LSB between them; the drift check runs all of them.
"""

from __future__ import annotations

import dataclasses
import platform
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from edgepack._native import captured_output, import_tensorflow, last_native_lines
from edgepack.appmeta import AppDescription
from edgepack.backends.base import (
    BuiltModel,
    CalibrationData,
    Emulator,
    ExecutionPath,
    LayerCapture,
    ModelIO,
    QuantParams,
    TensorInfo,
    kept_artefact,
    pick_path,
    refuse_plan,
    require_numeric_inputs,
)
from edgepack.convert.tf_view import TFView, tf_view
from edgepack.drift.layers import TensorPair
from edgepack.errors import ConversionError, UnsupportedError
from edgepack.frontends.base import Feeds, Outputs, SourceModel
from edgepack.frontends.tf_call import signature_name, tf_callable, tf_input_dtype
from edgepack.placement import Device, Placement
from edgepack.tune import Candidate, PrecisionPlan

IO_DTYPES = ("int8", "uint8", "int16", "float32")  # int16: 16x8 (int16 activations)
MODES = ("static", "dynamic")
SUPPORTED_SOURCES = ("keras", "savedmodel", "onnx")
CALIBRATION_METHODS = ("minmax",)
_FLOAT_TYPES = (np.float32, np.float16, np.float64)
# Conversions the converter puts around a float op; the op itself is what to report.
_BOUNDARY_OPS = ("QUANTIZE", "DEQUANTIZE")
# ops with dynamic-range ("hybrid") kernels: float activations, int8 weights
_HYBRID_OPS = (
    "FULLY_CONNECTED",
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "BATCH_MATMUL",
    "EMBEDDING_LOOKUP",
)

PATHS = (
    ExecutionPath(
        "builtin",
        "LiteRT's built-in optimized kernels, no delegate (the CPU kernels LiteRT falls back "
        "to for ops a delegate does not take)",
    ),
    ExecutionPath(
        "xnnpack",
        "LiteRT with the XNNPACK delegate, which LiteRT applies by default: the CPU path of "
        "most Android apps",
    ),
    ExecutionPath(
        "reference",
        "LiteRT's reference kernels (BUILTIN_REF): the arithmetic TFLite Micro reproduces on "
        "microcontrollers",
    ),
)
# Path -> LiteRT OpResolverType member.
MICRO_PATH = ExecutionPath(
    "micro",
    "TFLite Micro's interpreter and reference kernels (tflite-micro), batch 1: the arithmetic "
    "of a microcontroller without an accelerated kernel library; run when drift.paths names it",
    on_request=True,
)
# TFLite Micro's arena for the drift check: generous (the measured minimum is in the manifest)
MICRO_CHECK_ARENA = 64 * 1024 * 1024
_RESOLVERS = {
    "builtin": "BUILTIN_WITHOUT_DEFAULT_DELEGATES",
    "xnnpack": "BUILTIN",
    "reference": "BUILTIN_REF",
}


@dataclass(frozen=True)
class TFLiteSettings:
    """``[settings]`` of a TFLite profile."""

    io_dtype: str = "int8"
    allow_float_fallback: bool = False
    batch_size: int = 1
    calibration_method: str = "minmax"
    per_channel: bool = True  # per-channel weight scales (false: one scale per weight tensor)
    # static: full integer from calibration; dynamic: dynamic-range quantization, int8 weights
    # with float activations quantized at run time (CPU kernels; float32 I/O)
    mode: str = "static"
    # a microcontroller bundle: TFLite Micro's kernels only, firmware sources, measured arena
    micro: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.mode == "dynamic" and (self.io_dtype != "float32" or not self.allow_float_fallback):
            raise ValueError(
                "mode = 'dynamic' keeps float activations: it needs io_dtype = 'float32' and "
                "allow_float_fallback = true"
            )
        if self.mode == "static" and self.io_dtype == "float32":
            raise ValueError(
                "io_dtype = 'float32' is for mode = 'dynamic' (full int8 has int8 I/O)"
            )
        if self.calibration_method not in CALIBRATION_METHODS:
            raise ValueError(
                "the TFLite converter calibrates with min/max ranges only: calibration_method "
                f"must be 'minmax', got {self.calibration_method!r}"
            )
        if self.io_dtype not in IO_DTYPES:
            raise ValueError(f"io_dtype must be one of {IO_DTYPES}, got {self.io_dtype!r}")
        if not isinstance(self.allow_float_fallback, bool):
            raise ValueError("allow_float_fallback must be true or false")
        if not isinstance(self.per_channel, bool):
            raise ValueError("per_channel must be true or false")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a whole number >= 1, got {self.batch_size!r}")
        if not isinstance(self.micro, bool):
            raise ValueError("micro must be true or false")
        if self.micro and (
            self.mode != "static" or self.allow_float_fallback or self.batch_size != 1
        ):
            raise ValueError(
                "micro = true needs full integer: mode = 'static', allow_float_fallback = false "
                "and batch_size = 1"
            )


class TFLiteBackend:
    """Builds ``model.tflite`` and runs it in the LiteRT interpreter."""

    name: str = "tflite"
    model_file_name: str = "model.tflite"
    settings_type: type = TFLiteSettings

    def check_support(self, source: SourceModel, settings: TFLiteSettings) -> None:
        if source.format not in SUPPORTED_SOURCES:
            raise UnsupportedError(
                f"the tflite backend converts Keras, SavedModel and ONNX sources; "
                f"{source.path.name} is {source.format}"
            )
        require_numeric_inputs(source, "tflite full-int8")

    def build(
        self,
        source: SourceModel,
        calibration: CalibrationData,
        settings: TFLiteSettings,
        workdir: Path,
        plan: PrecisionPlan | None = None,
    ) -> BuiltModel:
        refuse_plan(
            f"tflite ({settings.io_dtype} I/O, allow_float_fallback = "
            f"{str(settings.allow_float_fallback).lower()})",
            plan,
            self.precisions(settings),
        )
        tf = import_tensorflow()
        mixed: dict[str, dict[str, Any]] = {}
        with tempfile.TemporaryDirectory(prefix="edgepack-tflite-") as scratch:
            view, converter = _converter(tf, source, calibration, settings, Path(scratch))
            if "int16" in self.precisions(settings) and settings.mode == "static":
                mixed = _mixed_range_outputs(source, calibration, view, converter, Path(scratch))
            if plan is not None or mixed:  # even an empty plan: the per-op quantizer's int8
                flatbuffer = _quantize_per_op(
                    converter, view, calibration, settings, plan or PrecisionPlan(), mixed
                )
            else:
                flatbuffer = self._quantize(tf, converter, view, calibration, settings)
        model_file = workdir / self.model_file_name
        model_file.write_bytes(flatbuffer)
        float_ops = _float_ops(model_file)
        if float_ops and not settings.allow_float_fallback:
            culprits = [op for op in float_ops if op not in _BOUNDARY_OPS] or float_ops
            raise ConversionError(
                f"ops left in float, but the profile demands full integer: {', '.join(culprits)} "
                "(set allow_float_fallback = true in the profile to accept CPU fallback)"
            )
        micro = _micro_bundle(model_file, view) if settings.micro else {}
        inputs, outputs = _io_details(model_file, view)
        versions = {
            "tensorflow": str(tf.__version__),
            "ai-edge-litert": metadata.version("ai-edge-litert"),
        }
        if micro:
            from edgepack.backends.tflite_micro import micro_version

            versions["tflite-micro"] = micro_version()
        if source.format == "onnx":
            versions["onnx2tf"] = metadata.version("onnx2tf")
        details: dict[str, Any] = {
            "signature": SIGNATURE_KEY,
            "ops": _op_counts(model_file),
            "float_ops": float_ops,
            **view.details(),
        }
        details["precision_counts"] = _precision_counts(model_file)
        if mixed:
            details["mixed_range_outputs"] = mixed
        if plan is not None or mixed:
            versions["ai-edge-quantizer"] = metadata.version("ai-edge-quantizer")
            details["quantizer"] = "ai-edge-quantizer (per-op recipe)"
        if plan:
            details["precision"] = dict(plan.layers)
        if micro:
            details["micro"] = micro
        return BuiltModel(
            model_file=model_file,
            files=tuple(micro.get("files", ())),
            inputs=inputs,
            outputs=outputs,
            versions=versions,
            calibration_method=settings.calibration_method
            if settings.mode == "static"
            else "none: activation ranges computed at run time (dynamic range)",
            details=details,
        )

    def _quantize(
        self,
        tf: Any,
        converter: Any,
        view: TFView,
        calibration: CalibrationData,
        settings: TFLiteSettings,
    ) -> bytes:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter._experimental_disable_per_channel = not settings.per_channel
        if settings.mode == "dynamic":  # no representative data: weights only, at build time
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
            return _convert(converter)
        converter.representative_dataset = _representative(view, calibration, settings)
        ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
            if settings.io_dtype == "int16"
            else tf.lite.OpsSet.TFLITE_BUILTINS_INT8
        ]
        if settings.allow_float_fallback:
            ops.append(tf.lite.OpsSet.TFLITE_BUILTINS)
        converter.target_spec.supported_ops = ops
        converter.inference_input_type = getattr(tf, settings.io_dtype)
        converter.inference_output_type = getattr(tf, settings.io_dtype)
        converter._experimental_disable_per_channel = not settings.per_channel
        return _convert(converter)

    def describe(self, built: BuiltModel, app: AppDescription) -> BuiltModel:
        """TFLite Metadata (what Android Studio's ML Model Binding and the Task Library read):
        image properties and normalisation of the image input, the labels as an associated
        file of the output they index, the contract as ``edgepack-contract.json``."""
        from edgepack.backends.tflite_metadata import embed_metadata

        model = built.model_file.read_bytes()
        meta = tflite_model_meta(app)
        built.model_file.write_bytes(embed_metadata(model, meta))
        packed = ", ".join(name for name, _ in meta.files)
        details = dict(
            built.details, metadata=f"TFLite Metadata (TFLITE_METADATA; packed: {packed})"
        )
        return dataclasses.replace(built, details=details)

    def places(self, settings: TFLiteSettings) -> str:
        if settings.micro:
            return ""
        return "Qualcomm, MediaTek and Google Tensor SoCs (SM8650, mt6989, Tensor_G4)"

    def devices(self, names: Sequence[str], settings: TFLiteSettings) -> list[Device]:
        """SoCs of the NPU vendors LiteRT has compiler plugins for (none for a
        microcontroller bundle)."""
        from edgepack.placement import litert

        if settings.micro:
            return []
        return [litert.device(name) for name in names if litert.vendor_of(name) is not None]

    def place(
        self,
        built: BuiltModel,
        devices: Sequence[Device],
        sample_shapes: Mapping[str, tuple[int, ...]],
        compile: bool,
        artefacts: Path | None = None,
    ) -> list[Placement]:
        """The vendors' own compilers, through LiteRT's AOT plugins (the model's shapes are
        already fixed)."""
        from edgepack.placement import litert

        placements = []
        for device in devices:
            keep = None if artefacts is None else artefacts / f"{device.name}.tflite"
            placements.append(
                kept_artefact(litert.place(built.model_file, device, compile, keep), keep)
            )
        return placements

    def precisions(self, settings: TFLiteSettings) -> tuple[str, ...]:
        """16-bit activations with int8 weights (LiteRT's 16x8 builtin kernels), built per op
        with Google's ai-edge-quantizer; then, only where the profile allows float fallback
        (ops an NPU delegate hands back to the CPU), float ops. The per-op quantizer's
        bundles have int8 inputs and outputs, so neither for uint8-I/O profiles, nor for 16x8
        profiles (int16 I/O), whose every activation is 16-bit already."""
        if settings.io_dtype != "int8":  # uint8 or int16 I/O, or dynamic range (float I/O)
            return ()
        return ("int16", "float") if settings.allow_float_fallback else ("int16",)

    def calibration_candidates(self, settings: TFLiteSettings) -> tuple[Candidate, ...]:
        """The converter calibrates with min/max ranges only; what it lets one choose is
        per-channel or per-tensor weight scales: the profile's own first, then the other."""
        return (
            Candidate(_weights_name(settings.per_channel)),
            Candidate(
                _weights_name(not settings.per_channel),
                {"per_channel": not settings.per_channel},
            ),
        )

    def paths(self, native: bool = False) -> tuple[ExecutionPath, ...]:
        return (*PATHS, MICRO_PATH) if _has_micro() else PATHS

    def emulate(
        self,
        model_file: Path,
        inputs: Sequence[TensorInfo],
        outputs: Sequence[TensorInfo],
        native: bool = False,  # the host runtime is the real one
        path: str | None = None,
    ) -> Emulator:
        chosen = pick_path(self.paths(), path)
        if chosen.name == MICRO_PATH.name:
            return _micro_emulator(model_file, inputs, outputs)
        interpreter = _interpreter(model_file, resolver=_RESOLVERS[chosen.name])
        out_by_name = {d["name"]: d for d in interpreter.get_output_details()}

        def run(feeds: Feeds) -> Outputs:
            results: dict[str, list[np.ndarray]] = {o.source_name: [] for o in outputs}
            for count in _invocations(interpreter, inputs, feeds):
                for info in outputs:
                    raw = interpreter.get_tensor(out_by_name[info.name]["index"])
                    real = _transposed(dequantize(raw, info), info.transpose)
                    results[info.source_name].append(real[:count])
            return {name: np.concatenate(parts) for name, parts in results.items()}

        version = metadata.version("ai-edge-litert")
        delegated = _delegated_nodes(interpreter)
        if chosen.name == "xnnpack" and not delegated:
            raise ConversionError(f"{model_file}: LiteRT applied no XNNPACK delegate")
        return Emulator(
            runtime=f"ai-edge-litert {version} ({chosen.name} kernels, on host)",
            run=run,
            path=chosen.name,
            output_steps={
                o.source_name: o.quantization.scale
                for o in outputs
                if o.quantization is not None and o.dtype in IO_DTYPES
            },
            details={"delegated_nodes": delegated},
        )

    def model_io(self, model_file: Path) -> tuple[list[ModelIO], list[ModelIO]]:
        interpreter = _interpreter(model_file)
        return (
            [_declared(d) for d in interpreter.get_input_details()],
            [_declared(d) for d in interpreter.get_output_details()],
        )

    def capture_layers(
        self,
        source: SourceModel,
        calibration: CalibrationData,
        model_file: Path,
        inputs: Sequence[TensorInfo],
        settings: TFLiteSettings,
        feeds: Feeds,
    ) -> LayerCapture:
        """The int8 model and a float TFLite model converted from the same fixed-shape export,
        both run in LiteRT with every tensor preserved; tensors matched by name (the converter
        names them after the TF ops, the same in both), quantized ones dequantized."""
        tf = import_tensorflow()
        with tempfile.TemporaryDirectory(prefix="edgepack-tflite-layers-") as scratch:
            _, converter = _converter(tf, source, calibration, settings, Path(scratch))
            float_file = Path(scratch) / "float.tflite"
            float_file.write_bytes(_convert(converter))
            reference = _intermediates(float_file, inputs, feeds, quantized=False)
        quantized = _intermediates(model_file, inputs, feeds, quantized=True)
        pairs = [
            TensorPair(name, reference[name][1], value, order)
            for name, (order, value) in quantized.items()
            if name in reference and reference[name][1].shape == value.shape
        ]
        return LayerCapture(
            pairs,
            "LiteRT tensors of the int8 model and of a float TFLite model converted from the "
            "same export, matched by tensor name (dequantized with each tensor's scale)",
            path="builtin",
        )


def _weights_name(per_channel: bool) -> str:
    return f"minmax, {'per-channel' if per_channel else 'per-tensor'} weights"


def _converter(
    tf: Any,
    source: SourceModel,
    calibration: CalibrationData,
    settings: TFLiteSettings,
    scratch: Path,
) -> tuple[TFView, Any]:
    """The TF view of ``source`` exported with fixed input shapes, and a converter on it."""
    # 16x8: the converter cannot quantize the HARD_SWISH op it fuses (see onnx_forms)
    view = tf_view(
        source,
        calibration,
        settings.batch_size,
        scratch,
        unfused_hardswish=settings.io_dtype == "int16",
    )
    export_dir = scratch / "fixed_shape"
    shapes = {
        name: tuple(array.shape[1:]) for name, array in view.tf_sample(calibration.first()).items()
    }
    _export_fixed_shape(tf, view.model, shapes, settings.batch_size, export_dir)
    return view, tf.lite.TFLiteConverter.from_saved_model(str(export_dir))


def _intermediates(
    model_file: Path, inputs: Sequence[TensorInfo], feeds: Feeds, quantized: bool
) -> dict[str, tuple[int, np.ndarray]]:
    """Every op output of ``model_file`` over ``feeds``, as float: name -> (op order, batch)."""
    interpreter = _interpreter(model_file, preserve_all_tensors=True)
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    produced = [
        (order, index)
        for order, op in enumerate(interpreter._get_ops_details())
        for index in op["outputs"]
        if index >= 0
    ]
    parts: dict[str, list[np.ndarray]] = {}
    for count in _invocations(interpreter, inputs, feeds, quantized):
        for _, index in produced:
            detail = details[index]
            value = _dequantized(interpreter.get_tensor(index), detail)
            if value is not None:
                parts.setdefault(detail["name"], []).append(value[:count])
    order = {details[index]["name"]: position for position, index in produced}
    return {name: (order[name], np.concatenate(values)) for name, values in parts.items()}


def _dequantized(value: np.ndarray, detail: dict[str, Any]) -> np.ndarray | None:
    """A tensor as float; None for tensors that are not activations (int32 shapes, indices)."""
    if np.issubdtype(value.dtype, np.floating):
        return value.astype(np.float32)
    scale, zero_point = detail["quantization"]
    if not scale or value.dtype not in (np.int8, np.uint8, np.int16):
        return None
    return (value.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)


def _transposed(value: np.ndarray, perm: tuple[int, ...] | None) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "iub":  # integer inputs (token ids) keep every digit
        array = array.astype(np.float32)
    return array if perm is None else np.ascontiguousarray(array.transpose(perm))


# ---------------------------------------------------------------------------- conversion


def _export_fixed_shape(
    tf: Any,
    source: SourceModel,
    input_shapes: dict[str, tuple[int, ...]],
    batch: int,
    export_dir: Path,
) -> None:
    """Save a SavedModel whose serving signature has fixed input shapes and source output names.

    Going through a SavedModel (rather than a concrete function) freezes the variables of
    Keras 3 models, which the converter's calibration run needs.
    """
    function = _fixed_shape_function(tf, source, input_shapes, batch)
    with captured_output():
        if source.format == "keras":
            import keras

            archive = keras.export.ExportArchive()
            archive.track(source.native)
            archive.add_endpoint("serving_default", function)
            archive.write_out(str(export_dir))
        else:
            module = tf.Module()
            module.source = source.native
            tf.saved_model.save(module, str(export_dir), signatures={"serving_default": function})


def _fixed_shape_function(
    tf: Any, source: SourceModel, input_shapes: dict[str, tuple[int, ...]], batch: int
) -> Any:
    """A tf.function with fixed input shapes whose outputs are keyed by source output names."""
    specs = [
        tf.TensorSpec(
            (batch, *input_shapes[s.name]), tf_input_dtype(tf, s), name=signature_name(s.name, i)
        )
        for i, s in enumerate(source.inputs)
    ]
    return tf.function(tf_callable(source), input_signature=specs)


def _representative(view: TFView, calibration: CalibrationData, settings: TFLiteSettings) -> Any:
    # Keyed by signature input name: a list would be matched to the converted graph's inputs
    # by position, and the converter orders a two-input signature by name (ids fed as masks).
    keys = {signature_name(s.name, i): s.name for i, s in enumerate(view.model.inputs)}

    def generate() -> Any:
        for sample in calibration.samples():
            tf_sample = view.tf_sample(sample)
            yield {
                key: np.repeat(tf_sample[name], settings.batch_size, axis=0)
                for key, name in keys.items()
            }

    return generate


def _quantize_per_op(
    converter: Any,
    view: TFView,
    calibration: CalibrationData,
    settings: TFLiteSettings,
    plan: PrecisionPlan,
    mixed: dict[str, dict[str, Any]] | None = None,
) -> bytes:
    """A float TFLite model from ``converter``, quantized by ai-edge-quantizer: every op
    static int8 (weights per-channel or per-tensor as the profile says), the ops that produce
    the plan's int16 tensors and the ops that read them with 16-bit activations, so that the
    widened tensor is int16 from its producer to its consumers; the ops around the plan's
    float tensors are left unquantized the same way. ``mixed`` (signature output key ->
    record) names outputs whose concat gets 16 bits (its ``int16_tensors``)."""
    from ai_edge_quantizer import qtyping, quantizer
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    with tempfile.TemporaryDirectory(prefix="edgepack-aeq-") as scratch:
        float_file = Path(scratch) / "float.tflite"
        float_file.write_bytes(_convert(converter))
        granularity = (
            qtyping.QuantGranularity.CHANNELWISE
            if settings.per_channel
            else qtyping.QuantGranularity.TENSORWISE
        )
        wide = set(plan.tensors_at("int16"))
        for record in (mixed or {}).values():
            wide.update(record["int16_tensors"])
        widened = _ops_around(float_file, wide)
        floated = _ops_around(float_file, set(plan.tensors_at("float")))
        try:
            with captured_output():
                aeq = quantizer.Quantizer(str(float_file))
                aeq.add_static_config(".*", "*", 8, 8, granularity)
                if widened:
                    names = "|".join(re.escape(name) for name in sorted(widened))
                    # searched in the op's scope name, which holds more than the output's
                    # name: not anchored
                    aeq.add_static_config(f"({names})", "*", 16, 8, granularity)
                if floated:
                    names = "|".join(re.escape(name) for name in sorted(floated))
                    aeq.update_quantization_recipe(
                        f"({names})", "*", algorithm_key=AlgorithmName.NO_QUANTIZE
                    )
                signature, samples = _aeq_samples(float_file, view, calibration, settings)
                result = aeq.quantize(aeq.calibrate({signature: samples}))
        except Exception as exc:
            text = " ".join(str(exc).split())[:300]
            raise ConversionError(
                f"ai-edge-quantizer could not quantize the model: {text}"
            ) from None
        return bytes(result.quantized_model)


_LAYOUT_OPS = ("RESHAPE", "TRANSPOSE", "SQUEEZE", "EXPAND_DIMS")
MIXED_RANGE_SAMPLES = 64


def _mixed_range_outputs(
    source: SourceModel,
    calibration: CalibrationData,
    view: TFView,
    converter: Any,
    scratch: Path,
) -> dict[str, dict[str, Any]]:
    """Signature output keys of the outputs whose channels' float ranges differ more than
    int8 can hold (:func:`edgepack.drift.channels.mixed_range_outputs`, on calibration
    samples run through the source model) and that a CONCATENATION joins, with the source
    name, axis, ratio and the tensors to widen; none when no such output (then the
    converter's own full-int8 path is kept)."""
    from edgepack.drift.channels import mixed_range_outputs

    found = mixed_range_outputs(source.run(calibration.take(MIXED_RANGE_SAMPLES)))
    keys = {key: name for key, name in view.output_names.items() if name in found}
    if not keys:
        return {}
    float_file = scratch / "float-for-outputs.tflite"
    float_file.write_bytes(_convert(converter))
    records = {}
    for key, name in keys.items():
        tensors = _concat_chain(float_file, key)
        if tensors:
            axis, ratio = found[name]
            records[key] = {
                "output": name,
                "axis": axis,
                "range_ratio": round(ratio, 1),
                "int16_tensors": tensors,
            }
    return records


def _concat_chain(model_file: Path, output_key: str) -> list[str]:
    """Tensor names from the signature output ``output_key`` back through layout ops to the
    CONCATENATION joining its parts, and that op's inputs; [] when no concat produces it."""
    interpreter = _interpreter(model_file)
    names = {d["index"]: d["name"] for d in interpreter.get_tensor_details()}
    producers = {out: op for op in interpreter._get_ops_details() for out in op["outputs"]}
    index = interpreter._get_full_signature_list()["serving_default"]["outputs"][output_key]
    chain = [index]
    op = producers.get(index)
    while op is not None and op["op_name"] in _LAYOUT_OPS:
        chain.append(op["inputs"][0])
        op = producers.get(op["inputs"][0])
    if op is None or op["op_name"] != "CONCATENATION":
        return []
    return [names[i] for i in chain + [i for i in op["inputs"] if i in producers]]


def _ops_around(model_file: Path, tensors: set[str]) -> set[str]:
    """Output tensor names of the ops producing ``tensors`` and of the ops reading them
    (ai-edge-quantizer's per-op configs match an op by its output tensor names)."""
    interpreter = _interpreter(model_file)
    names = {d["index"]: d["name"] for d in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    produced = {i for op in ops for i in op["outputs"] if names.get(i) in tensors}
    chosen: set[str] = set()
    for op in ops:
        if produced & set(op["outputs"]) or produced & set(op["inputs"]):
            chosen.update(names[i] for i in op["outputs"] if i >= 0)
    return chosen


def _aeq_samples(
    model_file: Path, view: TFView, calibration: CalibrationData, settings: TFLiteSettings
) -> tuple[str, list[dict[str, np.ndarray]]]:
    """The float model's signature and the calibration samples keyed by its input names."""
    interpreter = _interpreter(model_file)
    signatures = interpreter.get_signature_list()
    signature = next(iter(signatures))
    inputs = signatures[signature]["inputs"]
    keys = {signature_name(s.name, i): s.name for i, s in enumerate(view.model.inputs)}
    if set(keys) != set(inputs):
        raise ConversionError(f"the float model's signature inputs {inputs} are not {sorted(keys)}")
    samples = []
    for sample in calibration.samples():
        tf_sample = view.tf_sample(sample)
        samples.append(
            {
                key: np.repeat(tf_sample[name], settings.batch_size, axis=0)
                for key, name in keys.items()
            }
        )
    return signature, samples


def _precision_counts(model_file: Path) -> dict[str, int]:
    """Ops by the type of their first activation input: int8 (int8/uint8), int16, float. A
    dynamic-range op (float activation, int8 weight: LiteRT's hybrid kernels quantize the
    activation at run time and multiply in int8) counts as int8."""
    interpreter = _interpreter(model_file)
    types = {d["index"]: d["dtype"] for d in interpreter.get_tensor_details()}
    counts = {"int8": 0, "int16": 0, "float": 0}
    for op in interpreter._get_ops_details():
        if op["op_name"] in ("QUANTIZE", "DEQUANTIZE", "DELEGATE"):
            continue
        inputs = [types[i] for i in op["inputs"] if i >= 0]
        first = inputs[0] if inputs else None
        hybrid = first in _FLOAT_TYPES and op["op_name"] in _HYBRID_OPS and np.int8 in inputs[1:]
        if first in (np.int8, np.uint8) or hybrid:
            counts["int8"] += 1
        elif first == np.int16:
            counts["int16"] += 1
        elif first in _FLOAT_TYPES:
            counts["float"] += 1
    return counts


def _convert(converter: Any) -> bytes:
    try:
        with captured_output():
            return bytes(converter.convert())
    except Exception as exc:
        text = " ".join(str(exc).split())
        ops = sorted(set(re.findall(r"'(?:tfl|tf)\.(\w+)'", text)))
        if ops:
            raise ConversionError(
                f"TFLite converter cannot build a full-integer model; ops: {', '.join(ops)}"
                f" ({text[:200]})"
            ) from None
        detail = text[:300] or last_native_lines()
        raise ConversionError(f"TFLite converter failed: {detail}") from None


# ---------------------------------------------------------------------------- inspection


def _interpreter(
    model_file: Path,
    preserve_all_tensors: bool = False,
    resolver: str = "BUILTIN_WITHOUT_DEFAULT_DELEGATES",
) -> Any:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    with captured_output():
        interpreter = Interpreter(
            model_path=str(model_file),
            experimental_op_resolver_type=getattr(OpResolverType, resolver),
            experimental_preserve_all_tensors=preserve_all_tensors,
        )
        interpreter.allocate_tensors()
    return interpreter


def _declared(detail: dict[str, Any]) -> ModelIO:
    scale, zero_point = detail["quantization"]
    quantization = QuantParams(float(scale), int(zero_point)) if scale else None
    return ModelIO(
        detail["name"],
        tuple(int(d) for d in detail["shape"]),
        np.dtype(detail["dtype"]).name,
        quantization,
    )


def _delegated_nodes(interpreter: Any) -> int:
    """How many nodes of the execution plan are delegate kernels (XNNPACK takes the whole
    graph, or the parts it supports, as one node each)."""
    return sum(1 for op in interpreter._get_ops_details() if op["op_name"] == "DELEGATE")


def _invocations(
    interpreter: Any, inputs: Sequence[TensorInfo], feeds: Feeds, quantized: bool = True
) -> Iterator[int]:
    """Feed ``feeds`` (source names and layouts) through the interpreter one static batch at a
    time (the last one padded); yields how many real samples each invocation holds.
    ``quantized=False`` feeds a float twin whose inputs have the bundle's names."""
    by_name = {d["name"]: d for d in interpreter.get_input_details()}
    batch = int(next(iter(by_name.values()))["shape"][0])
    total = len(next(iter(feeds.values())))
    for start in range(0, total, batch):
        chunk = {k: v[start : start + batch] for k, v in feeds.items()}
        for info in inputs:
            detail = by_name[info.name]
            data = _pad(_transposed(chunk[info.source_name], info.transpose), batch)
            as_fed = info if quantized else dataclasses.replace(info, quantization=None)
            interpreter.set_tensor(detail["index"], quantize(data, as_fed, detail["dtype"]))
        try:
            interpreter.invoke()
        except RuntimeError as exc:  # a kernel's own check, e.g. an int8 DIV by its zero point
            text = " ".join(str(exc).split())[:300]
            raise ConversionError(f"LiteRT could not run the bundle: {text}") from None
        yield len(next(iter(chunk.values())))


def _float_ops(model_file: Path) -> list[str]:
    """Ops that read or write a float tensor (QUANTIZE/DEQUANTIZE at the edge included).

    Not counted: a CAST of an integer tensor to float and the QUANTIZE that reads it, the
    converter's way into int8 from an integer input (an attention mask used as a factor):
    NNAPI and the vendors' NPU delegates take both ops (firmware-notes/android-npu.md)."""
    interpreter = _interpreter(model_file)
    dtypes = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    cast_from_integer = {
        out
        for op in ops
        if op["op_name"] == "CAST" and all(_is_integer(dtypes.get(i)) for i in op["inputs"])
        for out in op["outputs"]
    }
    found = set()
    for op in ops:
        if op["op_name"] == "CAST" and set(op["outputs"]) <= cast_from_integer:
            continue
        if op["op_name"] == "QUANTIZE" and set(op["inputs"]) <= cast_from_integer:
            continue
        tensors = [i for i in [*op["inputs"], *op["outputs"]] if i >= 0]
        if any(dtypes.get(i) in _FLOAT_TYPES for i in tensors):
            found.add(op["op_name"])
    return sorted(found)


def _is_integer(dtype: Any) -> bool:
    """An integer or bool tensor that is not a quantized one (token ids, masks, shapes)."""
    return dtype in (np.int32, np.int64, np.bool_)


def _op_counts(model_file: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for op in _interpreter(model_file)._get_ops_details():
        counts[op["op_name"]] = counts.get(op["op_name"], 0) + 1
    return dict(sorted(counts.items()))


def _io_details(model_file: Path, view: TFView) -> tuple[list[TensorInfo], list[TensorInfo]]:
    """Bundle inputs/outputs, matched to source names through the model's signature."""
    interpreter = _interpreter(model_file)
    signature = interpreter._get_full_signature_list()["serving_default"]
    index_to_key_in = {index: key for key, index in signature["inputs"].items()}
    index_to_key_out = {index: key for key, index in signature["outputs"].items()}
    sig_to_tf = {signature_name(s.name, i): s.name for i, s in enumerate(view.model.inputs)}
    inputs = []
    for position, detail in enumerate(interpreter.get_input_details()):
        key = index_to_key_in[detail["index"]]
        source_name = view.input_names[sig_to_tf[key]]
        perm = view.input_perms[source_name]
        info = _info(detail, source_name, perm, "NHWC" if perm is not None else None)
        inputs.append(dataclasses.replace(info, index=position, key=key))
    outputs = []
    for position, detail in enumerate(interpreter.get_output_details()):
        key = index_to_key_out[detail["index"]]
        source_name = view.output_names[key]
        perm = view.output_perms[source_name]
        info = _info(detail, source_name, perm, "NHWC" if perm is not None else None)
        outputs.append(dataclasses.replace(info, index=position, key=key))
    order = {name: i for i, name in enumerate(view.output_names.values())}
    outputs.sort(key=lambda info: order[info.source_name])
    return inputs, outputs


def _info(
    detail: dict[str, Any], source_name: str, perm: tuple[int, ...] | None, layout: str | None
) -> TensorInfo:
    scale, zero_point = detail["quantization"]
    quant = QuantParams(float(scale), int(zero_point)) if scale else None
    return TensorInfo(
        name=detail["name"],
        source_name=source_name,
        shape=tuple(int(d) for d in detail["shape"]),
        dtype=np.dtype(detail["dtype"]).name,
        quantization=quant,
        layout=layout,
        transpose=perm,
    )


# ---------------------------------------------------------------------------- microcontrollers


def _has_micro() -> bool:
    import importlib.util

    return importlib.util.find_spec("tflite_micro") is not None


def _micro_bundle(model_file: Path, view: TFView) -> dict[str, Any]:
    """Make the built model a microcontroller's: ``RELU_0_TO_1`` rewritten where exact, every
    op one TFLite Micro has a kernel for (else refused, naming them), the firmware sources
    written beside it and the smallest arena measured."""
    from edgepack.backends import tflite_micro as micro

    micro.require_micro()
    flatbuffer, rewritten = micro.relu_0_to_1_as_relu(model_file.read_bytes())
    if rewritten:
        model_file.write_bytes(flatbuffer)
    missing = micro.missing_kernels(flatbuffer)
    if missing:
        raise UnsupportedError(
            f"TFLite Micro has no kernel for {', '.join(missing)}: the model cannot run on a "
            "microcontroller (replace those layers, or build the tflite target)"
        )
    ops = micro.model_ops(flatbuffer)
    arena = micro.smallest_arena(model_file, len(view.model.inputs))
    sources = micro.firmware_sources(flatbuffer, ops, arena)
    for name, text in sources.items():
        (model_file.parent / name).write_text(text)
    return {
        "ops": ops,
        "resolver": [micro.resolver_method(op) for op in ops],
        "arena_bytes": arena,
        "measured_with": f"tflite-micro {micro.micro_version()} on the build host "
        f"({platform.machine()}, reference kernels); a 32-bit MCU needs less for its own "
        "structures, an optimized kernel library (CMSIS-NN) may need scratch buffers",
        "model_data_bytes": len(flatbuffer),
        "relu_0_to_1_rewritten": rewritten,
        "files": sorted(sources),
    }


def _micro_emulator(
    model_file: Path, inputs: Sequence[TensorInfo], outputs: Sequence[TensorInfo]
) -> Emulator:
    from edgepack.backends import tflite_micro as micro
    from edgepack.backends.tflite_metadata import model_part

    flatbuffer = model_part(model_file.read_bytes())
    interpreter = micro.micro_interpreter(flatbuffer, MICRO_CHECK_ARENA)
    dtypes = {info.name: np.dtype(info.dtype) for info in inputs}

    def run(feeds: Feeds) -> Outputs:
        results: dict[str, list[np.ndarray]] = {o.source_name: [] for o in outputs}
        total = len(next(iter(feeds.values())))
        for sample in range(total):
            for position, info in enumerate(inputs):
                value = _transposed(feeds[info.source_name][sample : sample + 1], info.transpose)
                index = position if info.index is None else info.index
                interpreter.set_input(quantize(value, info, dtypes[info.name]), index)
            try:
                interpreter.invoke()
            except RuntimeError as exc:
                text = " ".join(str(exc).split())[:300]
                raise ConversionError(f"TFLite Micro could not run the bundle: {text}") from None
            for position, info in enumerate(outputs):
                index = position if info.index is None else info.index
                raw = np.asarray(interpreter.get_output(index))
                real = _transposed(dequantize(raw, info), info.transpose)
                results[info.source_name].append(real)
        return {name: np.concatenate(parts) for name, parts in results.items()}

    return Emulator(
        runtime=f"tflite-micro {micro.micro_version()} (TFLite Micro kernels, on host)",
        run=run,
        path=MICRO_PATH.name,
        output_steps={
            o.source_name: o.quantization.scale for o in outputs if o.quantization is not None
        },
    )


# ---------------------------------------------------------------------------- metadata

SIGNATURE_KEY = "serving_default"  # the one signature a bundle's model has
CONTRACT_FILE = "edgepack-contract.json"  # the whole contract, packed into the model file
_COLOR_SPACES = {"RGB": "RGB", "GRAY": "GRAYSCALE"}  # TFLite has no BGR: UNKNOWN


def tflite_model_meta(app: AppDescription) -> Any:
    """The TFLite Metadata of a bundle's model, from its app description."""
    from edgepack.backends.tflite_metadata import ImageMeta, ModelMeta, TensorMeta

    pre = app.preprocessing
    inputs = []
    for info in app.inputs:
        image = mean = std = None
        if pre is not None and pre.get("size") and pre.get("input") == info.source_name:
            height, width = pre["size"]
            image = ImageMeta(_COLOR_SPACES.get(pre["color"], "UNKNOWN"), width, height)
            # x = (pixel * scale - mean) / std = (pixel - mean / scale) / (std / scale)
            mean = tuple(m / pre["scale"] for m in pre["mean"])
            std = tuple(d / pre["scale"] for d in pre["std"])
        inputs.append(
            TensorMeta(
                name=info.key or info.source_name,
                description=_tensor_text(info, "input"),
                image=image,
                mean=mean,
                std=std,
            )
        )
    outputs = []
    for info in app.outputs:
        meaning = app.meaning(info.source_name)
        labelled = meaning.labels_axis is not None and app.labels_file is not None
        outputs.append(
            TensorMeta(
                name=info.key or info.source_name,
                description=_tensor_text(info, meaning.semantics or "output"),
                labels_file=app.labels_file if labelled else None,
            )
        )
    files = [(CONTRACT_FILE, (app.contract_json() + "\n").encode())]
    if app.labels and app.labels_file:
        files.append((app.labels_file, ("\n".join(app.labels) + "\n").encode()))
    return ModelMeta(
        name=app.name,
        description=app.description or f"{app.name}, built by edgepack",
        version=app.version,
        author=app.author,
        license=app.license,
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        files=tuple(files),
        model_files=((CONTRACT_FILE, "edgepack's preprocessing and output contract (JSON)"),),
    )


def _tensor_text(info: TensorInfo, what: str) -> str:
    quant = info.quantization
    text = f"{what} {info.source_name}: {info.dtype} {list(info.shape)}"
    if quant is not None:
        text += f", real = (q - {quant.zero_point}) * {quant.scale:.9g}"
    return text


# ---------------------------------------------------------------------------- numerics


def quantize(values: np.ndarray, info: TensorInfo, dtype: Any) -> np.ndarray:
    """real -> q = round(real / scale) + zero_point, rounding half away from zero, saturated."""
    if info.quantization is None:
        return values.astype(dtype)
    scaled = values / np.float32(info.quantization.scale)
    rounded = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)
    limits = np.iinfo(dtype)
    return np.clip(rounded + info.quantization.zero_point, limits.min, limits.max).astype(dtype)


def dequantize(values: np.ndarray, info: TensorInfo) -> np.ndarray:
    """q -> real = (q - zero_point) * scale."""
    if info.quantization is None:
        return values.astype(np.float32)
    shifted = values.astype(np.float32) - np.float32(info.quantization.zero_point)
    return shifted * np.float32(info.quantization.scale)


def _pad(batch: np.ndarray, size: int) -> np.ndarray:
    if len(batch) == size:
        return batch
    padding = np.zeros((size - len(batch), *batch.shape[1:]), dtype=batch.dtype)
    return np.concatenate([batch, padding])
