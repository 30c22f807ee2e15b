"""The protocol every backend implements, and the small types it exchanges with the core."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgepack.appmeta import AppDescription
from edgepack.drift.layers import TensorPair
from edgepack.errors import ConfigError, UnsupportedError
from edgepack.frontends.base import Feeds, Outputs, SourceModel
from edgepack.placement import Device, Placement
from edgepack.tune import Candidate, PrecisionPlan


@dataclass(frozen=True)
class QuantParams:
    """Per-tensor affine quantization: real = (q - zero_point) * scale."""

    scale: float
    zero_point: int


@dataclass(frozen=True)
class TensorInfo:
    """A bundle model's input or output, as the app sees it.

    ``transpose`` is set when the bundle's layout differs from the source model's: for an
    input, the axes permutation that turns a source-layout tensor into the bundle's; for an
    output, the one that turns the bundle's tensor back into the source layout.
    """

    name: str
    source_name: str
    shape: tuple[int, ...]
    dtype: str
    quantization: QuantParams | None = None
    layout: str | None = None
    transpose: tuple[int, ...] | None = None
    image: dict[str, Any] | None = None  # an image input: {"color", "scale", "bias"}
    classes: tuple[str, ...] | None = None  # a classifier's {class: probability} output
    index: int | None = None  # position among the model file's inputs (outputs)
    key: str | None = None  # the signature key apps address it by, where the format has one

    def to_dict(self) -> dict[str, Any]:
        quant = self.quantization
        return {
            "name": self.name,
            "index": self.index,
            "key": self.key,
            "source_name": self.source_name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "layout": self.layout,
            "transpose": None if self.transpose is None else list(self.transpose),
            "image": None if self.image is None else dict(self.image),
            "classes": None if self.classes is None else list(self.classes),
            "quantization": None
            if quant is None
            else {"scale": quant.scale, "zero_point": quant.zero_point},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TensorInfo:
        quant = data.get("quantization")
        transpose = data.get("transpose")
        return cls(
            name=data["name"],
            source_name=data["source_name"],
            shape=tuple(data["shape"]),
            dtype=data["dtype"],
            layout=data.get("layout"),
            transpose=None if transpose is None else tuple(transpose),
            image=data.get("image"),
            classes=None if data.get("classes") is None else tuple(data["classes"]),
            index=data.get("index"),
            key=data.get("key"),
            quantization=None
            if quant is None
            else QuantParams(float(quant["scale"]), int(quant["zero_point"])),
        )


@dataclass(frozen=True)
class ModelIO:
    """An input or output as the model file itself declares it (``shape`` None where the
    format does not give one, a Core ML classifier's dictionary output)."""

    name: str
    shape: tuple[int, ...] | None
    dtype: str
    quantization: QuantParams | None = None


@dataclass(frozen=True)
class BuiltModel:
    """What a backend's ``build`` leaves in the work folder."""

    model_file: Path
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    versions: dict[str, str]
    calibration_method: str
    details: dict[str, Any] = field(default_factory=dict)
    files: tuple[str, ...] = ()  # other files the build wrote for the bundle (firmware sources)


@dataclass(frozen=True)
class ExecutionPath:
    """One way the target's runtime can execute a bundle on the host (a kernel set, a
    delegate, an optimization level), named as in ``drift.paths``; ``description`` says what
    runs and which devices compute the same."""

    name: str
    description: str
    # run only when drift.paths names it (a runtime for one kind of bundle, TFLite Micro)
    on_request: bool = False


@dataclass(frozen=True)
class Emulator:
    """Runs a bundle's model on the host along one execution path: float feeds in, float
    outputs out (source names).

    ``kind``: ``host`` (the target's own runtime, run on the build host: LiteRT,
    onnxruntime), ``emulated`` (edgepack's emulator of a runtime the host lacks) or
    ``native`` (the vendor's runtime where it exists, Core ML on macOS). ``output_steps``
    gives, per source output name, the quantization step (one LSB) of outputs that leave the
    model quantized, so differences between paths can be told in LSB. ``details`` says what
    the path used on this host (instruction set, delegated nodes).
    """

    runtime: str
    run: Callable[[Feeds], Outputs]
    kind: str = "host"
    path: str = ""
    output_steps: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


KeepFloat = Callable[[Sequence[TensorInfo], Mapping[str, Sequence[str]]], dict[str, Outputs]]


@dataclass(frozen=True)
class LayerCapture:
    """Intermediate tensors of a bundle's model and of its float twin, paired by name
    (see :mod:`edgepack.drift.layers`); ``matching`` says how, in one sentence, and ``path``
    names the execution path the bundle's model ran on (one that exposes every tensor).

    ``keep_float(outputs, groups)``, where the target can keep one layer in float, gives the
    bundle's outputs (source names) on that path once per group with only that group's
    tensors (a layer's) computed in float, their quantization removed and their weights the
    float twin's (a group without tensors: the bundle as it is); None where the target
    cannot yet.
    """

    pairs: list[TensorPair]
    matching: str
    path: str = ""
    keep_float: KeepFloat | None = None


@dataclass(frozen=True)
class CalibrationData:
    """What a backend gets from the calibration set.

    ``samples()`` yields one sample at a time (a float32 array with a batch axis of 1 per
    input, keyed by source input name) and can be called again for another pass; ``shapes``
    and ``layouts`` give each input's per-sample shape and declared layout (NHWC or NCHW for
    images, None when unknown).
    """

    samples: Callable[[], Iterable[dict[str, np.ndarray]]]
    shapes: dict[str, tuple[int, ...]]
    layouts: dict[str, str | None]
    preprocessing: Any = None  # the set's Preprocessing (image sets: size, colour, normalisation)
    image_input: str | None = None  # the source input an image set feeds
    labels: tuple[str, ...] | None = None  # class names, in output order, when the set has them

    def first(self) -> dict[str, np.ndarray]:
        return next(iter(self.samples()))

    def take(self, count: int) -> dict[str, np.ndarray]:
        """Up to ``count`` samples stacked into one batch per input."""
        parts: dict[str, list[np.ndarray]] = {}
        for index, sample in enumerate(self.samples()):
            if index == count:
                break
            for name, array in sample.items():
                parts.setdefault(name, []).append(array)
        return {name: np.concatenate(arrays) for name, arrays in parts.items()}


def fixed_input_shapes(
    inputs: Sequence[TensorInfo], sample_shapes: Mapping[str, tuple[int, ...]]
) -> dict[str, tuple[int, ...]]:
    """Each bundle input's shape as a device runs it: batch 1, and every other dimension the
    model leaves open taken from one calibration sample (``sample_shapes``: source names,
    source layout, batch axis first)."""
    fixed = {}
    for info in inputs:
        sample = sample_shapes.get(info.source_name)
        if sample is not None and info.transpose is not None:
            sample = tuple(sample[axis] for axis in info.transpose)
        dims = []
        for axis, dim in enumerate(info.shape):
            if dim is not None and dim > 0:
                dims.append(int(dim))
            elif axis > 0 and sample is not None and len(sample) == len(info.shape):
                dims.append(int(sample[axis]))
            else:
                dims.append(1)
        fixed[info.name] = tuple(dims)
    return fixed


def kept_artefact(placement: Placement, kept: Path | None) -> Placement:
    """``placement`` naming the compiled model it kept in the bundle (``npu/<file>``, the
    folder ``kept`` lies in), where the compile succeeded."""
    if kept is None or not placement.compiled:
        return placement
    return dataclasses.replace(placement, artefact=f"{kept.parent.name}/{kept.name}")


def pick_path(available: Sequence[ExecutionPath], name: str | None) -> ExecutionPath:
    """The execution path called ``name`` (None: the first), or a one-line error."""
    if name is None:
        return available[0]
    for path in available:
        if path.name == name:
            return path
    known = ", ".join(p.name for p in available)
    raise ConfigError(f"no execution path {name!r} on this host (available: {known})")


def refuse_plan(target: str, plan: PrecisionPlan | None, precisions: Sequence[str]) -> None:
    """Refuse a plan that gives a layer a precision the target's settings cannot express
    (``precisions``: its :meth:`Backend.precisions`)."""
    unexpressed = sorted(set(plan.layers.values()) - set(precisions)) if plan else []
    if unexpressed:
        raise UnsupportedError(
            f"{target} cannot give single layers {' or '.join(unexpressed)} precision "
            f"(it can: {', '.join(precisions) or 'none'})"
        )


NUMERIC_INPUT = ("float", "int", "uint", "bool")


def require_numeric_inputs(source: SourceModel, target: str) -> None:
    """Float inputs are calibrated, integer and bool inputs pass through; name any other
    (strings, complex numbers)."""
    others = [
        f"{s.name} ({s.dtype})" for s in source.inputs if not s.dtype.startswith(NUMERIC_INPUT)
    ]
    if others:
        raise UnsupportedError(
            f"{target} takes float, integer and bool inputs; not these: {', '.join(others)}"
        )


class Backend(Protocol):
    """What the core calls; only a backend knows its target format."""

    name: str
    model_file_name: str
    settings_type: type

    def check_support(self, source: SourceModel, settings: Any) -> None:
        """Raise :class:`~edgepack.errors.UnsupportedError` before any work is done."""

    def build(
        self,
        source: SourceModel,
        calibration: CalibrationData,
        settings: Any,
        workdir: Path,
        plan: PrecisionPlan | None = None,
    ) -> BuiltModel:
        """Convert and quantize ``source`` into ``workdir``; the layers of ``plan`` at the
        precision it gives them (one of :meth:`precisions`), the others int8."""
        ...

    def describe(self, built: BuiltModel, app: AppDescription) -> BuiltModel:
        """Write ``app`` (the contract, labels, name, version, author, licence) into the
        built model file's own metadata, in the form the target's app tooling reads, and
        give the file the name apps import it by; the model's computation is unchanged."""
        ...

    def places(self, settings: Any) -> str:
        """What devices :meth:`devices` takes, in words (for an error naming the others)."""
        ...

    def devices(self, names: Sequence[str], settings: Any) -> list[Device]:
        """Of ``names`` (``[compat]`` devices), the accelerators this target's bundles can be
        placed on, each with what its tool lacks on this host; names of other targets'
        devices are left out, a name the target's own tool does not know is a ConfigError."""
        ...

    def place(
        self,
        built: BuiltModel,
        devices: Sequence[Device],
        sample_shapes: Mapping[str, tuple[int, ...]],
        compile: bool,
        artefacts: Path | None = None,
    ) -> list[Placement]:
        """Where each op of the built model runs on each device (:mod:`edgepack.placement`),
        with the inputs fixed as the device runs them (``sample_shapes``: one calibration
        sample's, source names); with ``compile``, the vendor compilers also compile, and with
        ``artefacts`` (a folder in the bundle) their compiled models are kept there."""
        ...

    def precisions(self, settings: Any) -> tuple[str, ...]:
        """The precisions above int8 a layer of this target's bundles can be given
        (``int16``, ``float``; :mod:`edgepack.tune`), narrowest first; () when none."""
        ...

    def calibration_candidates(self, settings: Any) -> tuple[Candidate, ...]:
        """The calibration choices this target's quantizer offers, as settings changes, the
        profile's own (no overrides) first, then in the order the search should try them."""
        ...

    def paths(self, native: bool = False) -> tuple[ExecutionPath, ...]:
        """The execution paths this host can run a bundle on, the default one first
        (``native``: with the vendor's own runtime, where there is one)."""
        ...

    def emulate(
        self,
        model_file: Path,
        inputs: Sequence[TensorInfo],
        outputs: Sequence[TensorInfo],
        native: bool = False,
        path: str | None = None,
    ) -> Emulator:
        """A host runner for a built model (in a work folder or a bundle), on execution
        ``path`` (one of :meth:`paths`; None: the first). ``native`` asks for the vendor's own
        runtime where edgepack otherwise emulates it (Core ML on macOS)."""
        ...

    def model_io(self, model_file: Path) -> tuple[list[ModelIO], list[ModelIO]]:
        """The inputs and outputs the model file declares, read from the file itself (so
        ``check`` can tell when the manifest describes another model)."""
        ...

    def capture_layers(
        self,
        source: SourceModel,
        calibration: CalibrationData,
        model_file: Path,
        inputs: Sequence[TensorInfo],
        settings: Any,
        feeds: Feeds,
    ) -> LayerCapture:
        """Run the bundle's model and a float twin built from ``source`` on ``feeds`` (source
        names and layouts), keeping every intermediate tensor both have."""
        ...
