"""Core ML backend for the Apple Neural Engine: an ML program (``<Name>.mlpackage``).

Conversion: coremltools from the TensorFlow model (Keras and SavedModel sources directly, ONNX
sources through the SavedModel the ONNX path makes with onnx2tf: one path, no second
converter), batch 1, compute precision fp16 by default, minimum deployment target from the
profile. Compression (``quantize``):

- ``fp16``: no weight compression;
- ``w8``: int8 per-channel symmetric linear weights (``constexpr_affine_dequantize``);
- ``w8a8``: int8 weights and int8 activations (``quantize``/``dequantize`` pairs, iOS17+).
  coremltools computes the activation ranges by running the model with Core ML, which exists
  only on macOS. edgepack runs coremltools' own ``linear_quantize_activations`` unchanged
  except for the one step that needs Core ML: its model debugger's
  ``predict_intermediate_outputs`` is pointed, for the duration of the call, at edgepack's
  emulator, which returns the same intermediate tensors. The statistics code, the concat
  handling and the graph passes that insert the quantize/dequantize pairs are coremltools';
- ``palettize4`` / ``palettize6``: k-means palettized weights (``constexpr_lut_to_dense``).

Emulation: edgepack's NumPy interpreter of ML programs (Apple's runtime exists only on
macOS); the manifest records the drift numbers as emulated.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from edgepack import __version__
from edgepack._native import captured_output, import_coremltools
from edgepack.appmeta import CONTRACT_KEY, AppDescription
from edgepack.backends.base import (
    BuiltModel,
    CalibrationData,
    Emulator,
    ExecutionPath,
    LayerCapture,
    ModelIO,
    TensorInfo,
    pick_path,
    refuse_plan,
    require_numeric_inputs,
)
from edgepack.convert.recent import RecentResults
from edgepack.convert.tf_view import TFView, tf_view
from edgepack.drift.layers import TensorPair, stack_samples
from edgepack.errors import ConversionError, UnsupportedError
from edgepack.frontends.base import Feeds, Outputs, SourceModel
from edgepack.frontends.tf_call import signature_name
from edgepack.placement import Device, Placement
from edgepack.tune import Candidate, PrecisionPlan

# Mode -> the oldest deployment target whose opset has the ops the mode needs.
QUANTIZE_MODES = {"fp16": 15, "w8": 16, "w8a8": 17, "palettize4": 16, "palettize6": 16}
PRECISIONS = ("fp16", "fp32")
# w8a8 activations -> coremltools' OpLinearQuantizerConfig mode
ACTIVATION_MODES = {"symmetric": "linear_symmetric", "asymmetric": "linear"}
DEPLOYMENT_TARGETS = ("iOS15", "iOS16", "iOS17", "iOS18")


@dataclass(frozen=True)
class CoreMLSettings:
    """``[settings]`` of a Core ML profile."""

    quantize: str = "w8"
    deployment_target: str = "iOS17"
    compute_precision: str = "fp16"
    image_input: bool = False
    classifier: bool = True
    per_channel: bool = True  # int8 weights: per-channel scales (false: one per weight tensor)
    activations: str = "symmetric"  # w8a8: int8 activations symmetric, or asymmetric (zero point)

    def __post_init__(self) -> None:
        if self.quantize not in QUANTIZE_MODES:
            raise ValueError(
                f"quantize must be one of {', '.join(QUANTIZE_MODES)}, got {self.quantize!r}"
            )
        if self.deployment_target not in DEPLOYMENT_TARGETS:
            raise ValueError(f"deployment_target must be one of {', '.join(DEPLOYMENT_TARGETS)}")
        for name in ("image_input", "classifier", "per_channel"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false")
        if self.activations not in ACTIVATION_MODES:
            raise ValueError(f"activations must be one of {', '.join(ACTIVATION_MODES)}")
        if self.compute_precision not in PRECISIONS:
            raise ValueError(f"compute_precision must be one of {', '.join(PRECISIONS)}")
        if self.ios < QUANTIZE_MODES[self.quantize]:
            raise ValueError(
                f"quantize = {self.quantize!r} needs deployment_target iOS"
                f"{QUANTIZE_MODES[self.quantize]} or newer, got {self.deployment_target}"
            )

    @property
    def ios(self) -> int:
        return int(self.deployment_target.removeprefix("iOS"))


class CoreMLBackend:
    """Builds ``<Name>.mlpackage`` and runs it in edgepack's Core ML emulator."""

    name: str = "coreml"
    model_file_name: str = "Model.mlpackage"  # while building; describe() names it after the model
    settings_type: type = CoreMLSettings

    def check_support(self, source: SourceModel, settings: CoreMLSettings) -> None:
        require_numeric_inputs(source, "coreml")

    def build(
        self,
        source: SourceModel,
        calibration: CalibrationData,
        settings: CoreMLSettings,
        workdir: Path,
        plan: PrecisionPlan | None = None,
    ) -> BuiltModel:
        refuse_plan(f"coreml {settings.quantize}", plan, self.precisions(settings))
        with tempfile.TemporaryDirectory(prefix="edgepack-coreml-") as scratch:
            view, mlmodel, images, labels = _convert(
                source, calibration, settings, settings.compute_precision, Path(scratch)
            )
            kept = _float_ops(mlmodel, plan)
            if settings.quantize == "w8a8":
                samples = _core_ml_samples(mlmodel, view, calibration)
                mlmodel = _quantize_activations(
                    mlmodel, samples, kept.activations, ACTIVATION_MODES[settings.activations]
                )
        mlmodel = _compress(mlmodel, settings, kept.weights)
        _describe(mlmodel, source, settings)
        model_file = workdir / self.model_file_name
        with captured_output():
            mlmodel.save(str(model_file))
        _make_reproducible(model_file)
        inputs, outputs = _io_details(mlmodel, view, images, labels)
        versions = {"coremltools": metadata.version("coremltools")}
        versions.update({k: v for k, v in source.versions.items() if k == "tensorflow"})
        if source.format == "onnx":
            versions["onnx2tf"] = metadata.version("onnx2tf")
        details = {**_details(mlmodel, settings), **view.details()}
        if plan:
            details["precision"] = dict(plan.layers)
        return BuiltModel(model_file, inputs, outputs, versions, _method(settings), details)

    def describe(self, built: BuiltModel, app: AppDescription) -> BuiltModel:
        """The contract, name, version, author and licence in the package's metadata (user
        defined ``edgepack.contract`` as JSON), Xcode's preview type for an image classifier,
        and the package named ``<Name>.mlpackage``: Xcode generates the class ``<Name>``."""
        spec_path = built.model_file / "Data" / "com.apple.CoreML" / "model.mlmodel"
        from coremltools.proto import Model_pb2

        spec = Model_pb2.Model()
        spec.ParseFromString(spec_path.read_bytes())
        _write_app_metadata(spec, app)
        spec_path.write_bytes(spec.SerializeToString(deterministic=True))
        named = built.model_file.with_name(f"{app.name}.mlpackage")
        if named != built.model_file:
            built.model_file.rename(named)
        keys = ", ".join(sorted(spec.description.metadata.userDefined))
        details = dict(built.details, class_name=app.name, metadata=f"user defined: {keys}")
        return dataclasses.replace(built, model_file=named, details=details)

    def places(self, settings: CoreMLSettings) -> str:
        from edgepack.placement import ane

        return ane.NAME

    def devices(self, names: Sequence[str], settings: CoreMLSettings) -> list[Device]:
        """``ane``: the Neural Engine, as a static estimate from documented constraints."""
        from edgepack.placement import ane

        return [ane.device() for name in names if ane.knows(name)]

    def place(
        self,
        built: BuiltModel,
        devices: Sequence[Device],
        sample_shapes: Mapping[str, tuple[int, ...]],
        compile: bool,
        artefacts: Path | None = None,
    ) -> list[Placement]:
        """Apple's documented Neural Engine constraints applied per op (nothing compiles:
        Core ML compiles on the device)."""
        from edgepack.placement import ane

        return [ane.place(built.model_file, device) for device in devices]

    def precisions(self, settings: CoreMLSettings) -> tuple[str, ...]:
        """Float: a layer's ops left out of coremltools' compression (``op_name_configs``
        None), so they compute in the program's precision (fp16 on the Neural Engine) with
        uncompressed weights and, in w8a8, unquantized activations. Not int16: Core ML
        quantizes activations to 8 bits only. fp16 programs have nothing to widen."""
        return () if settings.quantize == "fp16" else ("float",)

    def calibration_candidates(self, settings: CoreMLSettings) -> tuple[Candidate, ...]:
        """Linear int8 weights (w8, w8a8) can have per-channel or per-tensor scales: the
        profile's own first, then, in w8a8, its activations the other way (symmetric or with
        a zero point), then the other weight scales. Activation ranges are min/max, the only
        method coremltools' activation quantizer has; fp16 and palettized weights offer no
        choice."""
        own = Candidate(_granularity_name(settings))
        if settings.quantize not in ("w8", "w8a8"):
            return (own,)
        candidates = [own]
        if settings.quantize == "w8a8":
            (flipped,) = set(ACTIVATION_MODES) - {settings.activations}
            changed = dataclasses.replace(settings, activations=flipped)
            candidates.append(Candidate(_granularity_name(changed), {"activations": flipped}))
        other = dataclasses.replace(settings, per_channel=not settings.per_channel)
        candidates.append(Candidate(_granularity_name(other), {"per_channel": other.per_channel}))
        return tuple(candidates)

    def paths(self, native: bool = False) -> tuple[ExecutionPath, ...]:
        """One path: edgepack's emulator (or, with ``native``, Apple's runtime on macOS). The
        Neural Engine, GPU and CPU of a device are not separate paths here: the emulator
        computes what the ML program specifies (fp16 where the program says fp16)."""
        if native:
            return (ExecutionPath("native", "Apple's Core ML runtime (macOS only)"),)
        return (
            ExecutionPath(
                "emulator",
                "edgepack's NumPy interpreter of the ML program: the only Core ML path on "
                "this host (Apple's runtime exists only on macOS)",
            ),
        )

    def emulate(
        self,
        model_file: Path,
        inputs: Sequence[TensorInfo],
        outputs: Sequence[TensorInfo],
        native: bool = False,
        path: str | None = None,
    ) -> Emulator:
        chosen = pick_path(self.paths(native), path)
        kind = "native" if native else "emulated"
        if native:
            runner, runtime = _native_runtime(model_file)
        else:
            from edgepack.emulators.coreml import CoreMLEmulator

            runner = CoreMLEmulator(model_file)
            runtime = f"edgepack Core ML emulator {__version__} (NumPy, emulated)"

        def run(feeds: Feeds) -> Outputs:
            return _predicted(runner, inputs, outputs, feeds)

        return Emulator(runtime=runtime, run=run, kind=kind, path=chosen.name)

    def model_io(self, model_file: Path) -> tuple[list[ModelIO], list[ModelIO]]:
        coremltools = import_coremltools()
        description = coremltools.models.utils.load_spec(str(model_file)).description
        return (
            [_declared(f) for f in description.input],
            [_declared(f) for f in description.output],
        )

    def capture_layers(
        self,
        source: SourceModel,
        calibration: CalibrationData,
        model_file: Path,
        inputs: Sequence[TensorInfo],
        settings: CoreMLSettings,
        feeds: Feeds,
    ) -> LayerCapture:
        """The emulator's capture of the bundle's program against the same program converted
        again in fp32 without compression (same op names; fp16 programs add a ``_cast_fp16``
        suffix, dropped for matching)."""
        from edgepack.emulators.coreml import CoreMLEmulator

        with tempfile.TemporaryDirectory(prefix="edgepack-coreml-layers-") as scratch:
            _, twin, _, _ = _convert(source, calibration, settings, "fp32", Path(scratch))
        quantized = CoreMLEmulator(model_file)
        reference = CoreMLEmulator(twin)
        captured: dict[str, list[dict[str, np.ndarray]]] = {"q": [], "f": []}
        for sample in _samples(inputs, feeds):
            captured["q"].append(_float_tensors(quantized.capture(sample)))
            captured["f"].append(_float_tensors(reference.capture(sample)))
        q, f = stack_samples(captured["q"]), stack_samples(captured["f"])
        rescaled = {_matching_name(n) for n in quantized.rescaled_outputs()} & set(q) & set(f)
        for name in rescaled:
            q[name] = _in_float_units(q[name], f[name])
        pairs = [
            TensorPair(name, f[name], q[name], order)
            for order, name in enumerate(_matching_name(n) for n in quantized.op_outputs)
            if name in q and name in f and q[name].shape == f[name].shape
        ]
        matching = (
            "emulator captures of the bundle's program and of the same model converted again "
            "as an fp32 program without compression, matched by op output name"
        )
        if rescaled:
            matching += (
                f"; {len(rescaled)} add/sub outputs that coremltools computes in units of one "
                "input's scale (its distributive_quantized_binary_op_scale_normalization) "
                "brought back to float units by a least-squares factor"
            )
        keep_float = (
            partial(_outputs_keeping_float, quantized, reference, inputs, feeds)
            if settings.quantize != "fp16"
            else None  # an fp16 program has no quantized layer to keep in float
        )
        return LayerCapture(pairs, matching, path="emulator", keep_float=keep_float)


def _predicted(
    runner: Any, inputs: Sequence[TensorInfo], outputs: Sequence[TensorInfo], feeds: Feeds
) -> Outputs:
    """``runner`` (the emulator or Core ML) on ``feeds`` one sample at a time: the outputs
    by source name, in the source's layout, classifier dictionaries as probability vectors."""
    results: dict[str, list[np.ndarray]] = {o.source_name: [] for o in outputs}
    for sample in _samples(inputs, feeds):
        predicted = runner.predict(sample)
        for info in outputs:
            value = predicted[info.name]
            if info.classes is not None:  # {class: probability} -> vector
                value = [[value[label] for label in info.classes]]
            value = np.asarray(value, dtype=np.float32)
            results[info.source_name].append(_transposed(value, info.transpose))
    return {name: np.concatenate(parts) for name, parts in results.items()}


def _outputs_keeping_float(
    bundle: Any,
    twin: Any,
    inputs: Sequence[TensorInfo],
    feeds: Feeds,
    outputs: Sequence[TensorInfo],
    groups: Mapping[str, Sequence[str]],
) -> dict[str, Outputs]:
    """The bundle's program in the emulator once per group with the ops producing its
    tensors (matching names) in float (:meth:`CoreMLEmulator.with_float_ops`): their outputs
    read unquantized, their weights the fp32 twin's in the program's own precision."""
    program_names = {_matching_name(name): name for name in bundle.op_outputs}
    own = bundle.float_constants()
    float_weights = {_matching_name(name): c for name, c in twin.float_constants().items()}
    results = {}
    for layer, tensors in groups.items():
        ops: dict[str, dict[str, np.ndarray]] = {}
        for tensor in tensors:
            name = program_names.get(tensor)
            if name is None:
                continue
            ops[name] = {
                key: value.astype(own[name][key].dtype)
                for key, value in float_weights.get(tensor, {}).items()
                if key in own.get(name, {}) and own[name][key].shape == value.shape
            }
        results[layer] = _predicted(bundle.with_float_ops(ops), inputs, outputs, feeds)
    return results


def _in_float_units(quantized: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``quantized`` times the one positive factor that best matches ``reference`` (least
    squares): the scale the program divided it by (``CoreMLEmulator.rescaled_outputs``)."""
    energy = float(np.vdot(quantized, quantized))
    if energy == 0.0:
        return quantized
    factor = float(np.vdot(quantized, reference)) / energy
    return quantized * factor if factor > 0 else quantized


def _convert(
    source: SourceModel,
    calibration: CalibrationData,
    settings: CoreMLSettings,
    precision: str,
    scratch: Path,
) -> tuple[TFView, Any, dict[str, dict[str, Any]], list[str] | None]:
    """The source's TF view converted to an ML program of ``precision``, with the image
    inputs and classifier labels the settings ask for."""
    from edgepack.convert.tf_to_coreml import tensorflow_to_coreml

    view = tf_view(source, calibration, 1, scratch)
    shapes = {name: tuple(a.shape[1:]) for name, a in view.tf_sample(calibration.first()).items()}
    images = _image_inputs(view, calibration) if settings.image_input else {}
    labels = _class_labels(source, calibration) if settings.classifier else None
    key = (
        id(view.model.native),
        tuple(sorted(shapes.items())),
        precision,
        settings.ios,
        json.dumps(images, sort_keys=True),
        tuple(labels or ()),
    )
    cached = CONVERTED.get(key)
    if cached is None:
        mlmodel = tensorflow_to_coreml(view.model, shapes, precision, settings.ios, images, labels)
        cached = (view.model.native, mlmodel)  # the native model kept alive: its id is the key
        CONVERTED.put(key, cached)
    return view, _copy(cached[1]), images, labels


# ML programs converted in this process (edgepack.convert.recent), by the TF model's identity,
# the input shapes, the precision, deployment target, image inputs and class labels
CONVERTED = RecentResults()


def _copy(mlmodel: Any) -> Any:
    """A model of its own (spec and weights copied) for a build to compress and describe."""
    from coremltools.models import MLModel

    with captured_output():
        return MLModel(mlmodel.get_spec(), weights_dir=mlmodel.weights_dir, skip_model_load=True)


def _samples(inputs: Sequence[TensorInfo], feeds: Feeds) -> Iterator[dict[str, Any]]:
    """``feeds`` (source names and layouts) one sample at a time, as the program takes them."""
    total = len(next(iter(feeds.values())))
    for index in range(total):
        yield {i.name: _as_input(feeds[i.source_name][index : index + 1], i) for i in inputs}


def _matching_name(name: str) -> str:
    return name.removesuffix("_cast_fp16")


def _float_tensors(captured: dict[str, Any]) -> dict[str, np.ndarray]:
    return {
        _matching_name(name): np.asarray(value, np.float32)
        for name, value in captured.items()
        if isinstance(value, np.ndarray) and value.dtype.kind == "f"
    }


def _native_runtime(model_file: Path) -> tuple[Any, str]:
    """Apple's Core ML runtime: macOS only (coremltools predicts through it there)."""
    if sys.platform != "darwin":
        raise UnsupportedError(
            f"the native Core ML runtime exists only on macOS (this is {sys.platform}); "
            "use --runtime emulated"
        )
    ct = import_coremltools()
    try:
        model = ct.models.MLModel(str(model_file), compute_units=ct.ComputeUnit.ALL)
    except Exception as exc:
        text = " ".join(str(exc).split())[:200]
        raise UnsupportedError(f"Core ML could not load {model_file.name}: {text}") from None
    return model, f"Core ML {platform.mac_ver()[0]} (native, compute units ALL)"


def _as_input(value: np.ndarray, info: TensorInfo) -> np.ndarray:
    """A preprocessed sample (source layout) as the Core ML input wants it: the tensor in the
    bundle's layout, or for an image input the pixels (H, W, C) the model turns back into it."""
    tensor = _transposed(value, info.transpose)
    if info.image is None:
        return tensor
    hwc = tensor[0] if info.layout == "NHWC" else tensor[0].transpose(1, 2, 0)
    bias = np.asarray(info.image["bias"], dtype=np.float32)
    return (hwc - bias) / np.float32(info.image["scale"])


def _class_labels(source: SourceModel, calibration: CalibrationData) -> list[str] | None:
    """Labels for Core ML's classifier outputs: a single (batch, classes) output whose size
    is the number of labels the calibration set has."""
    labels = calibration.labels
    if labels is None or len(source.outputs) != 1:
        return None
    shape = source.outputs[0].shape
    return list(labels) if len(shape) == 2 and shape[1] == len(labels) else None


def _image_inputs(view: TFView, calibration: CalibrationData) -> dict[str, dict[str, Any]]:
    """The image input's colour layout, scale and bias, from the calibration contract:
    x = (pixel * scale - mean[c]) / std[c] = pixel * (scale / std) - mean[c] / std."""
    pre = calibration.preprocessing
    name = calibration.image_input
    if pre is None or name is None or pre.size is None:
        raise UnsupportedError(
            "image_input needs a calibration set of images (a contract with "
            "size and color); this set holds arrays"
        )
    if len(view.input_names) != 1:
        raise UnsupportedError("image_input needs a model with a single input")
    std = set(pre.std)
    if len(std) != 1:
        raise UnsupportedError(
            f"image_input: Core ML image inputs have one scale for every channel, but the "
            f"contract's std differs per channel {list(pre.std)}; use a tensor input"
        )
    deviation = std.pop()
    channels = pre.channels
    means = list(pre.mean) * channels if len(pre.mean) == 1 else list(pre.mean)
    tf_name = next(iter(view.input_names))
    return {
        tf_name: {
            "color": pre.color,
            "scale": pre.scale / deviation,
            "bias": [-m / deviation for m in means],
        }
    }


def _transposed(value: np.ndarray, perm: tuple[int, ...] | None) -> np.ndarray:
    array = np.asarray(value, dtype=np.float32)
    return array if perm is None else np.ascontiguousarray(array.transpose(perm))


@dataclass(frozen=True)
class _KeptFloat:
    """Op names of a plan's float layers: ``weights`` (the layers' own ops: their weights
    stay uncompressed) and ``activations`` (those ops and the ops that read their outputs:
    coremltools quantizes an activation where it enters an op, so a layer's output stays
    float only if its readers leave their inputs alone)."""

    weights: frozenset[str] = frozenset()
    activations: frozenset[str] = frozenset()


def _float_ops(mlmodel: Any, plan: PrecisionPlan | None) -> _KeptFloat:
    """The ops of ``mlmodel``'s program that ``plan`` keeps float (its tensors are named as
    the layer capture names them: op output names without the ``_cast_fp16`` suffix)."""
    tensors = set(plan.tensors_at("float")) if plan else set()
    if not tensors:
        return _KeptFloat()
    function = mlmodel.get_spec().mlProgram.functions["main"]
    operations = list(function.block_specializations[function.opset].operations)
    produced = {
        out.name for op in operations for out in op.outputs if _matching_name(out.name) in tensors
    }
    producers = {_op_name(op) for op in operations if produced & {o.name for o in op.outputs}}
    readers = {_op_name(op) for op in operations if produced & _input_names(op)}
    return _KeptFloat(frozenset(producers), frozenset(producers | readers))


def _op_name(op: Any) -> str:
    """A program operation's name (coremltools' op_name_configs key), from its spec."""
    if "name" in op.attributes:
        return str(op.attributes["name"].immediateValue.tensor.strings.values[0])
    return str(op.outputs[0].name)


def _input_names(op: Any) -> set[str]:
    return {arg.name for argument in op.inputs.values() for arg in argument.arguments if arg.name}


def _compress(mlmodel: Any, settings: CoreMLSettings, kept: frozenset[str] = frozenset()) -> Any:
    if settings.quantize == "fp16":
        return mlmodel
    import_coremltools()
    import coremltools.optimize.coreml as cto

    if settings.quantize in ("w8", "w8a8"):
        op_config: Any = cto.OpLinearQuantizerConfig(
            mode="linear_symmetric",
            dtype="int8",
            granularity="per_channel" if settings.per_channel else "per_tensor",
        )
        compress = cto.linear_quantize_weights
    else:
        op_config = cto.OpPalettizerConfig(mode="kmeans", nbits=int(settings.quantize[-1]))
        compress = cto.palettize_weights
    try:
        config = cto.OptimizationConfig(
            global_config=op_config, op_name_configs=dict.fromkeys(sorted(kept))
        )
        with captured_output():
            return compress(mlmodel, config)
    except Exception as exc:
        text = " ".join(str(exc).split())[:300]
        raise ConversionError(f"coremltools could not compress the weights: {text}") from None


def _granularity_name(settings: CoreMLSettings) -> str:
    if settings.quantize not in ("w8", "w8a8"):
        return f"{settings.quantize} (no calibration choice)"
    weights = "per-channel" if settings.per_channel else "per-tensor"
    activations = (
        f", minmax {settings.activations} activations" if settings.quantize == "w8a8" else ""
    )
    return f"{settings.quantize}: {weights} weights{activations}"


def _method(settings: CoreMLSettings) -> str:
    """What calibrated the activations (only w8a8 has quantized activations)."""
    return (
        f"minmax, {settings.activations} (activation ranges from the edgepack emulator)"
        if settings.quantize == "w8a8"
        else "none (weight-only compression)"
    )


def _core_ml_samples(
    mlmodel: Any, view: TFView, calibration: CalibrationData
) -> list[dict[str, np.ndarray]]:
    """Calibration samples named and laid out as the Core ML model's inputs."""
    names = {signature_name(s.name, i): s.name for i, s in enumerate(view.model.inputs)}
    inputs = [feature.name for feature in mlmodel.get_spec().description.input]
    samples = []
    for sample in calibration.samples():
        tf_sample = view.tf_sample(sample)
        samples.append({name: tf_sample[names[name]].astype(np.float32) for name in inputs})
    return samples


def _quantize_activations(
    mlmodel: Any,
    samples: list[dict[str, np.ndarray]],
    kept: frozenset[str] = frozenset(),
    mode: str = "linear_symmetric",
) -> Any:
    """coremltools' ``linear_quantize_activations`` in ``mode``, its activation ranges
    measured by edgepack's emulator instead of Core ML (see the module docstring); the ops
    ``kept`` leave their inputs float."""
    import_coremltools()
    import coremltools.optimize.coreml as cto
    from coremltools.optimize.coreml.experimental._model_debugger import ModelDebugger

    from edgepack.emulators.coreml import CoreMLEmulator

    emulator = CoreMLEmulator(mlmodel)

    def predict_intermediate_outputs(
        debugger: Any, inputs: Any, intermediate_output_names: Any, compute_units: Any = None
    ) -> dict[str, np.ndarray]:
        captured = emulator.capture(inputs, intermediate_output_names)
        return {name: np.asarray(value, dtype=np.float32) for name, value in captured.items()}

    config = cto.OptimizationConfig(
        global_config=cto.OpLinearQuantizerConfig(mode=mode, dtype="int8"),
        op_name_configs=dict.fromkeys(sorted(kept)),
    )
    from coremltools.optimize.coreml.experimental import _post_training_quantization as ptq

    replaced = {
        (ModelDebugger, "predict_intermediate_outputs"): predict_intermediate_outputs,
        (ModelDebugger, "record_intermediate_output"): staticmethod(
            lambda value, name, stats: _widen_range(name, value, stats)  # its argument order
        ),
        (ptq, "_update_tensor_range"): _widen_range,
    }
    originals = {key: key[0].__dict__[key[1]] for key in replaced}
    for (owner, name), value in replaced.items():
        setattr(owner, name, value)
    try:
        with captured_output():
            return cto.linear_quantize_activations(mlmodel, config, samples)
    except Exception as exc:
        text = " ".join(str(exc).split())[:300]
        raise ConversionError(f"coremltools could not quantize the activations: {text}") from None
    finally:
        for (owner, name), value in originals.items():
            setattr(owner, name, value)


def _widen_range(name: str, value: Any, stats: dict[str, dict[str, float]]) -> None:
    """A tensor's range over every calibration sample so far, widened by ``value``.

    coremltools 9.0's own (``ModelDebugger.record_intermediate_output``, and
    ``_update_tensor_range`` for the inputs) first overwrites the range with ``value``'s and
    then widens it by ``value`` again, so every activation range is the last calibration
    sample's alone: fer's w8a8 input range (asymmetric) ended at 0.26 where its 64
    calibration faces reach 0.99."""
    array = np.asarray(value, dtype=np.float64)
    low, high = float(array.min()), float(array.max())
    entry = stats[name]
    entry["rmin"] = min(low, entry.get("rmin", low))
    entry["rmax"] = max(high, entry.get("rmax", high))


def _describe(mlmodel: Any, source: SourceModel, settings: CoreMLSettings) -> None:
    mlmodel.short_description = (
        f"{source.path.name} for the Apple Neural Engine ({settings.quantize})"
    )
    mlmodel.user_defined_metadata["edgepack.version"] = __version__
    mlmodel.user_defined_metadata.pop("com.github.apple.coremltools.conversion_date", None)
    spec_inputs = [feature.name for feature in mlmodel.get_spec().description.input]
    for name, tensor in zip(spec_inputs, source.inputs, strict=False):
        mlmodel.input_description[name] = (
            f"{tensor.name}: the source model's input; preprocess as the bundle's manifest.json "
            "says (preprocessing)"
        )
    for feature in mlmodel.get_spec().description.output:
        mlmodel.output_description[feature.name] = {
            "stringType": "the most likely class",
            "dictionaryType": "probability of each class",
        }.get(feature.type.WhichOneof("Type"), f"{feature.name}: the source model's output")


# Xcode's model preview: an image classifier with an image input and a class label output.
PREVIEW_TYPE_KEY = "com.apple.coreml.model.preview.type"


def _write_app_metadata(spec: Any, app: AppDescription) -> None:
    metadata = spec.description.metadata
    metadata.shortDescription = app.description or metadata.shortDescription
    metadata.author = app.author
    metadata.license = app.license
    metadata.versionString = app.version
    metadata.userDefined[CONTRACT_KEY] = app.contract_json()
    if app.labels:
        metadata.userDefined["edgepack.labels"] = "\n".join(app.labels)
    inputs = {f.name: f.type.WhichOneof("Type") for f in spec.description.input}
    outputs = {f.type.WhichOneof("Type") for f in spec.description.output}
    if "imageType" in inputs.values() and "stringType" in outputs:
        metadata.userDefined[PREVIEW_TYPE_KEY] = "imageClassifier"
    for feature in spec.description.output:
        meaning = next(
            (app.meaning(o.source_name) for o in app.outputs if o.name == feature.name), None
        )
        if meaning is not None and meaning.semantics and feature.shortDescription:
            feature.shortDescription = f"{feature.shortDescription} ({meaning.semantics})"


def _make_reproducible(package: Path) -> None:
    """Make the same model give the same bundle, byte for byte: the package manifest names its
    items by random UUIDs (derive them from the item paths instead), and protobuf writes map
    fields (the model's metadata) in hash order unless asked to be deterministic."""
    spec_path = package / "Data" / "com.apple.CoreML" / "model.mlmodel"
    if spec_path.is_file():
        from coremltools.proto import Model_pb2

        spec = Model_pb2.Model()
        spec.ParseFromString(spec_path.read_bytes())
        spec_path.write_bytes(spec.SerializeToString(deterministic=True))
    manifest_path = package / "Manifest.json"
    manifest = json.loads(manifest_path.read_text())
    renamed = {}
    root = manifest.get("rootModelIdentifier")
    for key, entry in manifest.get("itemInfoEntries", {}).items():
        stable = str(uuid.uuid5(uuid.NAMESPACE_URL, f"edgepack:{entry.get('path', key)}")).upper()
        renamed[stable] = entry
        if key == root:
            manifest["rootModelIdentifier"] = stable
    manifest["itemInfoEntries"] = dict(sorted(renamed.items()))
    manifest_path.write_text(json.dumps(manifest, indent=4, sort_keys=True) + "\n")


def _io_details(
    mlmodel: Any,
    view: TFView,
    images: dict[str, dict[str, Any]],
    labels: list[str] | None,
) -> tuple[list[TensorInfo], list[TensorInfo]]:
    description = mlmodel.get_spec().description
    by_signature = {signature_name(s.name, i): s.name for i, s in enumerate(view.model.inputs)}
    inputs = []
    for position, feature in enumerate(description.input):
        tf_name = by_signature[feature.name]
        source_name = view.input_names[tf_name]
        perm = view.input_perms[source_name]
        image = images.get(tf_name)
        inputs.append(
            TensorInfo(
                feature.name,
                source_name,
                _shape(feature),
                _declared(feature).dtype,
                layout="NHWC" if perm is not None or image else None,
                transpose=perm,
                image=image,
                index=position,
            )
        )
    outputs = []
    for position, feature in enumerate(description.output):
        kind = feature.type.WhichOneof("Type")
        if kind == "stringType":
            continue  # classLabel: the app's convenience, derived from the probabilities
        if kind == "dictionaryType":
            (source_name,) = view.output_names.values()
            outputs.append(
                TensorInfo(
                    feature.name,
                    source_name,
                    (1, len(labels or [])),
                    "dictionary",
                    classes=tuple(labels or []),
                    index=position,
                )
            )
            continue
        source_name = view.output_names[feature.name]
        perm = view.output_perms[source_name]
        outputs.append(
            TensorInfo(
                feature.name,
                source_name,
                _shape(feature),
                _declared(feature).dtype,
                layout="NHWC" if perm is not None else None,
                transpose=perm,
                index=position,
            )
        )
    order = {name: i for i, name in enumerate(view.output_names.values())}
    outputs.sort(key=lambda info: order[info.source_name])
    return inputs, outputs


# MLMultiArray data types (ArrayFeatureType.ArrayDataType) the manifest names.
_ARRAY_DTYPES = {65568: "float32", 65552: "float16", 65600: "float64", 131104: "int32"}


def _declared(feature: Any) -> ModelIO:
    kind = feature.type.WhichOneof("Type")
    if kind == "dictionaryType":  # a classifier's {class: probability}: no shape in the file
        return ModelIO(feature.name, None, "dictionary")
    if kind == "imageType":
        return ModelIO(feature.name, _shape(feature), "image")
    data_type = feature.type.multiArrayType.dataType
    return ModelIO(feature.name, _shape(feature), _ARRAY_DTYPES.get(data_type, str(data_type)))


def _shape(feature: Any) -> tuple[int, ...]:
    """A tensor's shape; an image's (1, height, width, channels)."""
    kind = feature.type.WhichOneof("Type")
    if kind == "multiArrayType":
        return tuple(int(d) for d in feature.type.multiArrayType.shape)
    if kind == "imageType":
        image = feature.type.imageType
        channels = 1 if image.colorSpace == 10 else 3  # GRAYSCALE = 10
        return (1, int(image.height), int(image.width), channels)
    return ()


def _details(mlmodel: Any, settings: CoreMLSettings) -> dict[str, Any]:
    spec = mlmodel.get_spec()
    function = spec.mlProgram.functions["main"]
    block = function.block_specializations[function.opset]
    ops: dict[str, int] = {}
    for op in block.operations:
        ops[op.type] = ops.get(op.type, 0) + 1
    classifier = None
    if spec.description.predictedFeatureName:
        classifier = {
            "label_output": spec.description.predictedFeatureName,
            "probabilities_output": spec.description.predictedProbabilitiesName,
        }
    return {
        "ops": dict(sorted(ops.items())),
        "float_ops": [],
        "precision_counts": _precision_counts(block),
        "classifier": classifier,
        "quantize": settings.quantize,
        "compute_precision": settings.compute_precision,
        "deployment_target": settings.deployment_target,
        "opset": function.opset,
    }


_NOT_COMPUTE = ("const", "quantize", "dequantize")


def _precision_counts(block: Any) -> dict[str, int]:
    """Compute ops (not constants, not quantize/dequantize) by what they read: int8 when an
    input is int8 weights (a ``constexpr_*`` op) or an int8 activation (a ``dequantize``);
    float otherwise (fp16 or fp32 compute on the program's own values)."""
    producer = {out.name: op.type for op in block.operations for out in op.outputs}
    counts = {"int8": 0, "int16": 0, "float": 0}
    for op in block.operations:
        if op.type in _NOT_COMPUTE or op.type.startswith("constexpr_"):
            continue
        sources = [producer.get(name, "") for name in _input_names(op)]
        quantized = any(t == "dequantize" or t.startswith("constexpr_") for t in sources)
        counts["int8" if quantized else "float"] += 1
    return counts
