"""TFLite Micro: what a microcontroller bundle needs beside its full-int8 ``model.tflite``.

The facts come from the installed ``tflite-micro`` package itself (its interpreter, and the
``Register_<OP>`` kernels compiled into it), never from a hand-kept op list:

- :func:`missing_kernels`: the builtin ops of a model TFLite Micro has no kernel for;
- :func:`relu_0_to_1_as_relu`: ``RELU_0_TO_1`` (which TFLite Micro lacks) rewritten as
  ``RELU`` where that is exact: int8 ``RELU`` clamps to ``[zp + round(0 / s), 127]`` and
  ``RELU_0_TO_1`` to ``[zp + round(0 / s), min(127, zp + round(1 / s))]``, the same when the
  output's quantization cannot hold values above 1;
- :func:`firmware_sources`: ``model_data.cc``/``.h`` (the flatbuffer as a 16-byte aligned C
  array, without the metadata zip) and ``op_resolver.h`` (the ``MicroMutableOpResolver``
  registrations the model needs);
- :func:`smallest_arena`: the smallest tensor arena TFLite Micro's interpreter runs the model
  in, found by bisection in a child process (a far too small arena crashes the interpreter);
- :func:`micro_interpreter`: TFLite Micro's interpreter, for the drift check.

``tflite-micro`` ships Linux x86-64 wheels only (``pip install "edgepack[mcu]"``).
"""

from __future__ import annotations

import functools
import math
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgepack.errors import ConversionError, UnsupportedError

ARENA_ALIGNMENT = 16  # TFLite Micro aligns arena allocations to 16 bytes
MAX_ARENA = 256 * 1024 * 1024
# C++ method names of MicroMutableOpResolver that do not follow the op name's CamelCase
_METHOD_EXCEPTIONS = {
    "PADV2": "AddPadV2",
    "CUMSUM": "AddCumSum",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
}
RELU, RELU_0_TO_1 = 19, 152  # BuiltinOperator codes
RELU_INT8_VERSION = 2  # the version the converter writes for an int8 RELU
_DEPRECATED_PLACEHOLDER = 127  # deprecated_builtin_code of ops numbered 127 and above


def require_micro() -> Any:
    """The ``tflite_micro`` runtime module, or a one-line error saying how to get it."""
    try:
        from tflite_micro import runtime
    except ImportError:
        raise UnsupportedError(
            "the tflite-micro target needs TFLite Micro's interpreter: pip install "
            '"edgepack[mcu]" (tflite-micro has Linux x86-64 wheels only)'
        ) from None
    return runtime


def micro_version() -> str:
    import tflite_micro

    return str(getattr(tflite_micro, "__version__", "unknown"))


@functools.cache
def micro_kernels() -> frozenset[str]:
    """Builtin op names (``CONV_2D``) whose kernel TFLite Micro's installed runtime registers,
    read from the ``Register_<OP>`` symbols of its library."""
    require_micro()
    import tflite_micro

    names: set[str] = set()
    for library in Path(tflite_micro.__file__).parent.rglob("_runtime*.so"):
        data = library.read_bytes()
        for match in re.finditer(rb"(\d{1,3})Register_([A-Za-z0-9_]+)", data):
            length = int(match.group(1)) - len(b"Register_")
            name = match.group(2)[:length]
            if length > 0 and len(name) == length:
                names.add(name.decode())
    if not names:
        raise UnsupportedError("no kernels found in the installed tflite-micro runtime")
    return frozenset(names)


def model_ops(flatbuffer: bytes) -> list[str]:
    """The builtin op names the model's operators use (``CUSTOM:<code>`` for custom ops)."""
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.Model.GetRootAs(flatbuffer, 0)
    used = set()
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        for o in range(subgraph.OperatorsLength()):
            code = model.OperatorCodes(subgraph.Operators(o).OpcodeIndex())
            number = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            name = names.get(number, f"UNKNOWN_{number}")
            if name == "CUSTOM":
                name = f"CUSTOM:{(code.CustomCode() or b'').decode()}"
            used.add(name)
    return sorted(used)


def missing_kernels(flatbuffer: bytes) -> list[str]:
    """The model's ops TFLite Micro has no kernel for (custom ops count as missing)."""
    kernels = micro_kernels()
    return [op for op in model_ops(flatbuffer) if op not in kernels]


def resolver_method(op: str) -> str:
    """The ``MicroMutableOpResolver`` method that registers ``op`` (``CONV_2D`` ->
    ``AddConv2D``)."""
    if op in _METHOD_EXCEPTIONS:
        return _METHOD_EXCEPTIONS[op]
    parts = [p if p[:1].isdigit() else p[:1] + p[1:].lower() for p in op.split("_")]
    return "Add" + "".join(parts)


def relu_0_to_1_as_relu(flatbuffer: bytes) -> tuple[bytes, int]:
    """The model with every ``RELU_0_TO_1`` whose output quantization makes it equal to
    ``RELU`` rewritten as ``RELU`` (operator codes only, no other byte of meaning changes);
    and how many operators that covers. Others are left for :func:`missing_kernels`."""
    from ai_edge_litert import schema_py_generated as schema

    from edgepack.backends.tflite_metadata import pack_model

    model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
    codes = list(model.operatorCodes or [])
    targets = [
        i for i, c in enumerate(codes) if max(c.builtinCode, c.deprecatedBuiltinCode) == RELU_0_TO_1
    ]
    if not targets:
        return flatbuffer, 0
    exact: dict[int, bool] = {}
    count = 0
    for subgraph in model.subgraphs or []:
        for op in subgraph.operators or []:
            if op.opcodeIndex in targets:
                tensor = subgraph.tensors[op.outputs[0]]
                same = _relu_is_exact(tensor)
                exact[op.opcodeIndex] = exact.get(op.opcodeIndex, True) and same
                count += 1
    if not all(exact.get(i, False) for i in targets):
        return flatbuffer, 0  # one inexact use keeps the op (and the refusal naming it)
    for index in targets:
        codes[index].builtinCode = RELU
        codes[index].deprecatedBuiltinCode = RELU
        codes[index].version = RELU_INT8_VERSION
    return pack_model(model), count


def _relu_is_exact(tensor: Any) -> bool:
    quant = tensor.quantization
    if quant is None or quant.scale is None or len(quant.scale) != 1:
        return False
    scale, zero_point = float(quant.scale[0]), int(quant.zeroPoint[0])
    upper = zero_point + _round_half_away(1.0 / scale)
    return upper >= 127  # RELU_0_TO_1's own upper clamp would not bind


def _round_half_away(value: float) -> int:
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


def firmware_sources(flatbuffer: bytes, ops: Sequence[str], arena: int) -> dict[str, str]:
    """``model_data.h``/``.cc`` and ``op_resolver.h`` for the firmware."""
    body = ",\n".join(
        "  " + ", ".join(f"0x{b:02x}" for b in flatbuffer[i : i + 12])
        for i in range(0, len(flatbuffer), 12)
    )
    header = (
        "// The model as a C array, generated by edgepack (the flatbuffer of model.tflite\n"
        "// without its metadata). Keep it in flash; TFLite Micro reads it in place.\n"
        "#ifndef EDGEPACK_MODEL_DATA_H_\n#define EDGEPACK_MODEL_DATA_H_\n\n"
        f"constexpr unsigned int g_model_data_size = {len(flatbuffer)};\n"
        f"// smallest tensor arena measured with TFLite Micro's interpreter on the build host\n"
        f"constexpr unsigned int g_model_arena_size = {arena};\n"
        "extern const unsigned char g_model_data[];\n\n#endif  // EDGEPACK_MODEL_DATA_H_\n"
    )
    source = (
        '#include "model_data.h"\n\n'
        f"alignas(16) const unsigned char g_model_data[] = {{\n{body}\n}};\n"
    )
    methods = [resolver_method(op) for op in ops]
    registrations = "\n".join(f"  TF_LITE_ENSURE_STATUS(resolver.{m}());" for m in methods)
    resolver = (
        "// The ops model_data.cc needs, generated by edgepack.\n"
        "#ifndef EDGEPACK_OP_RESOLVER_H_\n#define EDGEPACK_OP_RESOLVER_H_\n\n"
        '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"\n\n'
        f"constexpr int kModelOpCount = {len(methods)};\n"
        "using ModelOpResolver = tflite::MicroMutableOpResolver<kModelOpCount>;\n\n"
        "inline TfLiteStatus RegisterModelOps(ModelOpResolver& resolver) {\n"
        f"{registrations}\n  return kTfLiteOk;\n}}\n\n#endif  // EDGEPACK_OP_RESOLVER_H_\n"
    )
    return {"model_data.h": header, "model_data.cc": source, "op_resolver.h": resolver}


# One interpreter per arena size asked on stdin; "ok" or "fail" per line. A far too small
# arena makes TFLite Micro dereference a null pointer: the parent restarts the child.
_ARENA_PROBE = """
import sys
import numpy as np
from tflite_micro import runtime
data = open(sys.argv[1], "rb").read()
for line in sys.stdin:
    try:
        interpreter = runtime.Interpreter.from_bytes(data, arena_size=int(line))
        for i in range(int(sys.argv[2])):
            detail = interpreter.get_input_details(i)
            interpreter.set_input(np.zeros(detail["shape"], detail["dtype"]), i)
        interpreter.invoke()
        print("ok", flush=True)
    except Exception:
        print("fail", flush=True)
"""


def smallest_arena(model_file: Path, inputs: int, floor: int = ARENA_ALIGNMENT) -> int:
    """The smallest arena (a multiple of 16 bytes) in which TFLite Micro's interpreter
    allocates the model (``model_file``, the flatbuffer alone) and invokes it once."""
    require_micro()
    probe = ArenaProbe(model_file, inputs)
    try:
        high = max(floor, 16 * 1024)
        while not probe.fits(high):
            if high >= MAX_ARENA:
                raise ConversionError(
                    f"TFLite Micro cannot run the model in {MAX_ARENA} bytes of arena"
                )
            high *= 2
        low = floor - ARENA_ALIGNMENT  # assumed too small
        while high - low > ARENA_ALIGNMENT:
            middle = (low + high) // 2 // ARENA_ALIGNMENT * ARENA_ALIGNMENT
            if probe.fits(middle):
                high = middle
            else:
                low = middle
        return high
    finally:
        probe.close()


class ArenaProbe:
    """Asks a child process whether the model runs in an arena of a given size; a crash of
    the child (TFLite Micro dereferences a null pointer in a far too small arena) is a "no",
    and the next question starts a new child."""

    def __init__(self, model_file: Path, inputs: int) -> None:
        self.model_file, self.inputs = model_file, inputs
        self.process: subprocess.Popen[str] | None = None

    def fits(self, size: int) -> bool:
        if self.process is None or self.process.poll() is not None:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _ARENA_PROBE, str(self.model_file), str(self.inputs)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            self.process.stdin.write(f"{size}\n")
            self.process.stdin.flush()
            answer = self.process.stdout.readline().strip()
        except BrokenPipeError:
            answer = ""
        if not answer:  # the interpreter crashed on this size
            self.close()
            return False
        return answer == "ok"

    def close(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


def micro_interpreter(flatbuffer: bytes, arena: int) -> Any:
    """TFLite Micro's interpreter for ``flatbuffer`` with ``arena`` bytes (``set_input(array,
    index)``, ``invoke()``, ``get_output(index)``)."""
    runtime = require_micro()
    try:
        return runtime.Interpreter.from_bytes(flatbuffer, arena_size=arena)
    except (RuntimeError, ValueError, TypeError) as exc:
        text = " ".join(str(exc).split())[:200]
        raise ConversionError(f"TFLite Micro cannot load the model: {text}") from None
