"""A NumPy interpreter of Core ML ML programs: run an ``.mlpackage`` on any OS.

Apple's Core ML runtime exists only on macOS; coremltools converts on Linux but cannot
predict there. :class:`CoreMLEmulator` loads an ML program (an ``.mlpackage`` folder or an
in-memory ``coremltools.models.MLModel``), reads its program with coremltools' milproto loader
(weights from the weight blob file), and executes the ops with NumPy kernels whose semantics
come from coremltools' op definitions (iOS15 to iOS18 opsets)::

    from edgepack.emulators.coreml import CoreMLEmulator

    emulator = CoreMLEmulator("Digits.mlpackage")
    outputs = emulator.predict({"image": array})          # like MLModel.predict
    tensors = emulator.capture({"image": array}, ["conv1_relu"])   # intermediate tensors

Precision: every tensor keeps the dtype the program declares (fp16 programs stay fp16 between
ops; int8/uint8 where quantized). Each op is computed in fp32 from its fp16 inputs and rounded
to fp16 on output. Weight decompression (``constexpr_affine_dequantize``,
``constexpr_blockwise_shift_scale``, ``constexpr_lut_to_dense``, ``constexpr_sparse_to_dense``,
and iOS18's ``constexpr_lut_to_sparse`` / ``constexpr_sparse_blockwise_shift_scale``)
and activation ``quantize``/``dequantize`` follow coremltools' formulas exactly (rounding half
to even, saturation to the output type).

Where a device can differ (also in ``firmware-notes/apple-ane.md``):

- accumulation: the Neural Engine and GPU accumulate convolutions and matmuls in fp16 or in
  mixed precision, in an order of their own; this emulator accumulates in fp32 (NumPy/BLAS
  order). Long reductions in fp16 programs can differ by a few fp16 ulps;
- transcendental functions (exp, tanh, erf, sigmoid ...) are evaluated in fp32 here; the Neural
  Engine uses its own approximations (piecewise or table based);
- ``gelu`` EXACT uses a rational erf approximation with error below 1.2e-7;
- fp16 overflow saturates to inf here as in IEEE; a device may clamp differently;
- ``random_*`` ops draw from NumPy's generator: the same distributions as Core ML, other
  numbers (Core ML's stream is not published).

Stateful programs (iOS18 states, such as a key-value cache) take ``state=make_state()`` in
:meth:`CoreMLEmulator.predict`; control flow (``cond``, ``while_loop``) and tensor lists run
as the program says.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgepack._native import import_coremltools
from edgepack.emulators.coreml.interpreter import CompiledFunction, Ref, opset_number
from edgepack.emulators.coreml.ops import supported_ops
from edgepack.emulators.coreml.ops.states import StateBuffer
from edgepack.errors import ModelLoadError, UnsupportedError

__all__ = ["CoreMLEmulator", "EmulatorState", "supported_ops"]


class CoreMLEmulator:
    """Runs an ML program on the host.

    ``model``: an ``.mlpackage`` folder, an ML program saved as a bare ``.mlmodel`` file (its
    weights, if any, in the ``weights/`` folder beside it, where Core ML looks for them), an
    in-memory ``coremltools.models.MLModel``, or a model spec (``Model_pb2.Model``).
    ``weights_dir``: where the weight files are, for a spec or a bare ``.mlmodel`` whose
    ``weights/`` folder lies elsewhere. Anything else, or an ML program whose weight files
    cannot be found, raises :class:`ModelLoadError` in one line; old ``neuralNetwork`` models
    raise :class:`UnsupportedError`.
    """

    def __init__(
        self,
        model: str | Path | Any,
        function_name: str = "main",
        weights_dir: str | Path | None = None,
    ) -> None:
        spec, weights, label = _load_spec(model, weights_dir)
        if spec.WhichOneof("Type") != "mlProgram":
            raise UnsupportedError(
                f"only ML programs (.mlpackage) are supported; this model is a "
                f"{spec.WhichOneof('Type')!r} model (convert with convert_to='mlprogram')"
            )
        _check_weight_files(spec, weights, label)
        program = _load_program(spec, weights, label)
        if function_name not in program.functions:
            raise ModelLoadError(
                f"{label}: the program has no function {function_name!r} "
                f"(it has {', '.join(sorted(program.functions))})"
            )
        opset = spec.mlProgram.functions[function_name].opset
        self._function = CompiledFunction(program.functions[function_name], opset_number(opset))
        self._images = _image_inputs(spec)
        self.description = spec.description
        self.opset = self._function.opset

    @property
    def input_names(self) -> list[str]:
        return [port.name for port in self._function.inputs]

    @property
    def output_names(self) -> list[str]:
        return [port.name for port in self._function.outputs]

    @property
    def op_outputs(self) -> list[str]:
        """The names :meth:`capture` can return, in execution order."""
        return [name for step in self._function.steps for name, _ in step.outputs]

    def float_constants(self) -> dict[str, dict[str, np.ndarray]]:
        """Each op's constant float tensor arguments (weights, biases, after any ``constexpr``
        decompression), by the op's first output name and argument name."""
        found: dict[str, dict[str, np.ndarray]] = {}
        for step in self._function.steps:
            for key, ref in step.args.items():
                if not isinstance(ref, Ref) or not isinstance(ref.value, np.ndarray):
                    continue
                if ref.name is None and ref.value.dtype.kind == "f" and ref.value.ndim >= 1:
                    found.setdefault(step.outputs[0][0], {})[key] = ref.value
        return found

    def rescaled_outputs(self) -> set[str]:
        """Op outputs an int8 program computes in units of one input's scale (coremltools'
        scale normalization of quantized ``add``/``sub``), not in float units."""
        return self._function.rescaled_outputs()

    def with_float_ops(self, ops: Mapping[str, Mapping[str, np.ndarray]]) -> CoreMLEmulator:
        """A copy of this emulator in which the ops with an output named in ``ops`` compute
        in float: the ops reading their outputs read them unquantized, and ``ops[output]``'s
        arguments (e.g. ``weight``, ``bias``) replace the program's constants; their own
        inputs stay as quantized, as when coremltools builds a layer float after quantized
        ones. A layer's own share of the drift, measured without converting again."""
        edited = copy.copy(self)
        edited._function = self._function.with_float_ops(ops)
        return edited

    @property
    def state_names(self) -> list[str]:
        """The program's state inputs (iOS18 stateful models); empty for most models."""
        return [port.name for port in self._function.states]

    def make_state(self) -> EmulatorState:
        """Fresh state for a stateful program, every buffer zero (like
        ``MLModel.make_state``); predictions given it read and update it."""
        return EmulatorState(
            {
                port.name: StateBuffer(np.zeros(port.shape, dtype=_held_dtype(port.dtype)))
                for port in self._function.states
            }
        )

    def predict(
        self, inputs: Mapping[str, Any], state: EmulatorState | None = None
    ) -> dict[str, Any]:
        """Outputs by name, like ``MLModel.predict`` (PIL images for image inputs); a
        stateful program needs ``state`` (from :meth:`make_state`)."""
        outputs, _ = self._function.run(self._feeds(inputs), states=self._buffers(state))
        return outputs

    def capture(
        self,
        inputs: Mapping[str, Any],
        names: Iterable[str] | None = None,
        state: EmulatorState | None = None,
    ) -> dict[str, np.ndarray]:
        """Intermediate tensors by op output name (every one when ``names`` is None)."""
        wanted = set(names) if names is not None else set()
        _, captured = self._function.run(
            self._feeds(inputs), capture=wanted, states=self._buffers(state)
        )
        missing = wanted - set(captured)
        if missing:
            raise KeyError(f"no op output named {sorted(missing)} in the program")
        return captured

    def _buffers(self, state: EmulatorState | None) -> dict[str, StateBuffer] | None:
        if not self._function.states:
            return None
        if state is None:
            raise ValueError(
                f"the model is stateful ({', '.join(self.state_names)}): "
                "pass state=emulator.make_state()"
            )
        missing = [name for name in self.state_names if name not in state.buffers]
        if missing:
            raise ValueError(f"the state lacks {missing}: make it with this model's make_state()")
        return state.buffers

    def _feeds(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        missing = [name for name in self.input_names if name not in inputs]
        if missing:
            raise ValueError(f"missing input(s) {missing}; the model takes {self.input_names}")
        feeds = {}
        for name in self.input_names:
            value = inputs[name]
            feeds[name] = (
                _image_array(value, self._images[name])
                if name in self._images
                else np.asarray(value)
            )
        return feeds


class EmulatorState:
    """The state of a stateful program across predictions (``MLState``'s counterpart)."""

    def __init__(self, buffers: dict[str, StateBuffer]) -> None:
        self.buffers = buffers

    def read(self, name: str) -> np.ndarray:
        """A copy of one state tensor's current value."""
        return np.array(self.buffers[name].value, copy=True)


def _held_dtype(dtype: Any) -> Any:
    """fp16 tensors are held as float32 numbers inside the interpreter."""
    return np.float32 if dtype == np.float16 else dtype


def _load_spec(model: str | Path | Any, weights_dir: str | Path | None) -> tuple[Any, Any, str]:
    """The model spec, the folder of its weight files (or None) and a label for errors."""
    ct = import_coremltools()
    given = None if weights_dir is None else str(weights_dir)
    if isinstance(model, str | Path):
        path = Path(model)
        if not path.exists():
            raise ModelLoadError(f"{path}: no such Core ML model")
        if path.suffix == ".mlmodelc":
            raise ModelLoadError(
                f"{path}: a compiled Core ML model cannot be read (only Core ML itself loads "
                ".mlmodelc); give the .mlpackage it was compiled from"
            )
        try:
            mlmodel = ct.models.MLModel(str(path), skip_model_load=True)
        except Exception as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ModelLoadError(f"{path}: not a loadable Core ML model ({reason})") from None
        beside = path.parent / "weights" if path.is_file() else None
        return mlmodel.get_spec(), given or mlmodel.weights_dir or beside, str(path)
    if hasattr(model, "get_spec"):
        return model.get_spec(), given or model.weights_dir, "the MLModel"
    if hasattr(model, "WhichOneof") and hasattr(model, "description"):
        return model, given, "the model spec"
    raise ModelLoadError(
        f"expected an .mlpackage or .mlmodel path, an MLModel or a model spec, got {type(model)}"
    )


def _blob_files(spec: Any) -> set[str]:
    """Names of the weight files the program's constants point into (``weight.bin``)."""
    names: set[str] = set()

    def visit_block(block: Any) -> None:
        for op in block.operations:
            for value in op.attributes.values():
                if value.WhichOneof("value") == "blobFileValue":
                    names.add(value.blobFileValue.fileName.split("/")[-1])
            for inner in op.blocks:
                visit_block(inner)

    for function in spec.mlProgram.functions.values():
        for block in function.block_specializations.values():
            visit_block(block)
    return names


def _check_weight_files(spec: Any, weights: Any, label: str) -> None:
    needed = _blob_files(spec)
    missing = sorted(
        name for name in needed if weights is None or not (Path(weights) / name).is_file()
    )
    if missing:
        where = "no weights folder was given" if weights is None else f"not in {weights}"
        raise ModelLoadError(
            f"{label}: the ML program's weight file {', '.join(missing)} is missing ({where}); "
            "give the .mlpackage, or keep the weights/ folder beside the .mlmodel, or pass "
            "weights_dir"
        )


def _load_program(spec: Any, weights: Any, label: str) -> Any:
    from coremltools.converters.mil.frontend.milproto.load import load as milproto_load

    try:
        return milproto_load(spec, spec.specificationVersion, str(weights or ""))
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelLoadError(f"{label}: the ML program cannot be read ({reason})") from None


def _image_inputs(spec: Any) -> dict[str, str]:
    """Image inputs and their colour space (RGB, BGR or GRAYSCALE)."""
    images = {}
    for feature in spec.description.input:
        if feature.type.WhichOneof("Type") == "imageType":
            space = feature.type.imageType.colorSpace
            images[feature.name] = {10: "GRAYSCALE", 20: "RGB", 30: "BGR"}.get(space, "RGB")
    return images


def _image_array(value: Any, color_space: str) -> np.ndarray:
    """A PIL image (or an HWC/HW array) -> float32 (1, C, H, W) of 0..255 values, as Core ML
    hands a CVPixelBuffer to the program."""
    if hasattr(value, "convert"):
        value = np.asarray(value.convert("L" if color_space == "GRAYSCALE" else "RGB"))
    array = np.asarray(value, dtype=np.float32)
    if array.ndim == 2:
        array = array[:, :, None]
    if color_space == "BGR":
        array = array[:, :, ::-1]
    return np.ascontiguousarray(array.transpose(2, 0, 1)[None])
