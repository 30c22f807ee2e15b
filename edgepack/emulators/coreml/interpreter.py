"""Compile a MIL function into a list of NumPy steps, then run it.

Compilation resolves every ``const`` (weights come from the blob file through coremltools'
milproto loader), folds every op whose inputs are all constant but the random number ops (so
``constexpr_*`` weight decompression happens once, at load), and checks that every remaining op
has a kernel: all unsupported op types are reported together before anything runs.

Precision: each tensor keeps the dtype the program declares for it. An op on fp16 tensors is
computed in fp32 from the fp16 values and its result rounded to fp16 (round half to even, inf
past 65504, fp16 subnormals), as a device stores fp16 activations between ops (how a device
accumulates inside an op is not modelled; see the package docstring). Internally an fp16 tensor
is held as float32 numbers that are exactly its fp16 values (NumPy's float16 conversions cost
several times the ops themselves); it is handed out as float16 in outputs and captures.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from edgepack.emulators.coreml.ops import Kernel, kernel_for
from edgepack.emulators.coreml.ops.random import NONDETERMINISTIC
from edgepack.emulators.coreml.plans import PLANNERS
from edgepack.errors import UnsupportedError

_CONST = object()

# Ops whose every output value is one of their input values (or a constant of the program's
# own type): on fp16 inputs they produce fp16 values, so their outputs need no rounding.
_SELECTING_OPS = frozenset(
    {
        "relu",
        "relu6",
        "clip",
        "threshold",
        "max_pool",
        "maximum",
        "minimum",
        "abs",
        "reshape",
        "transpose",
        "concat",
        "split",
        "slice_by_index",
        "slice_by_size",
        "squeeze",
        "expand_dims",
        "tile",
        "gather",
        "gather_nd",
        "gather_along_axis",
        "identity",
        "reduce_max",
        "reduce_min",
        "select",
        "pad",
        "reverse",
        "flatten2d",
        "depth_to_space",
        "space_to_depth",
        "pixel_shuffle",
        "stack",
    }
)


@dataclass(frozen=True)
class Ref:
    """An op input: a runtime variable (``name``) or a constant (``value``)."""

    name: str | None = None
    value: Any = None


@dataclass(frozen=True)
class Step:
    op_type: str
    name: str
    kernel: Kernel
    args: dict[str, Ref | tuple[Ref, ...]]
    outputs: tuple[tuple[str, Any], ...]  # (name, numpy dtype)
    call: Callable[[Mapping[str, Any]], Any]  # the kernel, or a plan, on the step's inputs
    exact_fp16: bool = False  # output values are input values: no rounding needed
    planned: bool = False  # runs a load-time plan (edgepack.emulators.coreml.plans)


@dataclass(frozen=True)
class Port:
    """A function input or output."""

    name: str
    dtype: Any
    shape: tuple[Any, ...]


@dataclass(frozen=True)
class Block:
    """A nested block of ``cond`` or ``while_loop``: names its inputs are bound to, its steps,
    and its outputs."""

    inputs: tuple[str, ...]
    steps: tuple[Step, ...]
    outputs: tuple[Ref, ...]

    def run(self, env: dict[str, Any], values: tuple[Any, ...] = ()) -> tuple[Any, ...]:
        env.update(zip(self.inputs, values, strict=True))
        for step in self.steps:
            for (name, _), value in zip(step.outputs, _execute(step, env), strict=True):
                env[name] = value
        return tuple(_resolve(ref, env) for ref in self.outputs)


# A loop that has not ended after this many iterations is taken for one that never ends.
MAX_LOOP_ITERATIONS = 10_000_000


def _truth(value: Any) -> bool:
    array = np.asarray(value)
    if array.size != 1:
        raise ValueError(f"a condition must be a single boolean, not shape {array.shape}")
    return bool(array.reshape(()))


def _cond(args: Mapping[str, Any], blocks: tuple[Block, ...]) -> Callable[[Any], Any]:
    """``cond``: the true block (``blocks[0]``) or the false one, by ``pred``."""
    pred = args["pred"]

    def run(env: Any) -> tuple[Any, ...]:
        return blocks[0 if _truth(_resolve(pred, env)) else 1].run(env)

    return run


def _while_loop(args: Mapping[str, Any], blocks: tuple[Block, ...]) -> Callable[[Any], Any]:
    """``while_loop``: the body block runs on the loop variables while the condition block
    gives true; the result is the last loop variables."""
    loop_vars = args["loop_vars"]
    condition, body = blocks

    def run(env: Any) -> tuple[Any, ...]:
        values = tuple(_resolve(ref, env) for ref in loop_vars)
        for _ in range(MAX_LOOP_ITERATIONS):
            if not _truth(condition.run(env, values)[0]):
                return values
            values = body.run(env, values)
        raise RuntimeError(f"the loop did not end after {MAX_LOOP_ITERATIONS} iterations")

    return run


_CONTROL_FLOW = {"cond": _cond, "while_loop": _while_loop}


def opset_number(opset: str) -> int:
    """``CoreML5`` .. ``CoreML8`` -> 15 .. 18 (iOS version of the opset)."""
    match = re.search(r"(\d+)$", str(opset))
    return int(match.group(1)) + 10 if match else 15


class CompiledFunction:
    """A MIL function ready to run on NumPy arrays."""

    def __init__(self, function: Any, opset: int) -> None:
        from coremltools.converters.mil.mil import types

        self._types = types
        self.opset = opset
        self.inputs = [
            Port(name, self._dtype(var), tuple(var.shape))
            for name, var in function.inputs.items()
            if not types.is_state(var.sym_type)
        ]
        self.states = [
            Port(name, self._dtype(var.sym_type.wrapped_type()), tuple(var.shape))
            for name, var in function.inputs.items()
            if types.is_state(var.sym_type)
        ]
        self.outputs = [
            Port(var.name, self._dtype(var), tuple(var.shape)) for var in function.outputs
        ]
        self.constants: dict[str, Any] = {}
        self.steps: list[Step] = []
        unsupported: set[str] = set()
        for op in function.operations:
            self._compile(op, unsupported, self.steps)
        if unsupported:
            raise UnsupportedError(
                f"the Core ML emulator does not support op(s): {', '.join(sorted(unsupported))}"
            )

    def _dtype(self, var: Any) -> Any:
        try:
            return self._types.nptype_from_builtin(var.dtype)
        except Exception:
            return object

    def _compile(self, op: Any, unsupported: set[str], steps: list[Step]) -> None:
        """Append ``op``'s step to ``steps``, or fold it into a constant."""
        if op.op_type == "const":
            for var in op.outputs:
                self.constants[var.name] = _python_value(var.val)
            return
        if any(getattr(op, "blocks", None) or []):
            self._compile_control_flow(op, unsupported, steps)
            return
        kernel = kernel_for(op.op_type, self.opset)
        if kernel is None:
            unsupported.add(op.op_type)
            return
        args: dict[str, Ref | tuple[Ref, ...]] = {}
        for key, value in op.inputs.items():
            if isinstance(value, list | tuple):
                args[key] = tuple(self._ref(v) for v in value)
            else:
                args[key] = self._ref(value)
        outputs = tuple((var.name, self._dtype(var)) for var in op.outputs)
        step = Step(op.op_type, op.name, kernel, args, outputs, _generic_call(kernel, args))
        if unsupported:
            return
        if not _all_constant(args.values()) or op.op_type in NONDETERMINISTIC:
            steps.append(self._specialised(op, step))
            return
        for (name, _), value in zip(outputs, _execute(step, {}), strict=True):
            self.constants[name] = value  # constant folding, constexpr_* included

    def _compile_control_flow(self, op: Any, unsupported: set[str], steps: list[Step]) -> None:
        """``cond`` and ``while_loop``: their blocks compiled to steps of their own, which run
        in the function's environment (block inputs and outputs are bound there by name; SSA
        names are unique, and inner ops read outer values directly)."""
        if op.op_type not in _CONTROL_FLOW:
            unsupported.add(op.op_type)
            return
        blocks = []
        for block in op.blocks:
            block_steps: list[Step] = []
            for inner in block.operations:
                self._compile(inner, unsupported, block_steps)
            inputs = tuple(var.name for var in block.inputs)
            blocks.append(Block(inputs, tuple(block_steps), tuple(map(self._ref, block.outputs))))
        args: dict[str, Ref | tuple[Ref, ...]] = {
            key: tuple(map(self._ref, value))
            if isinstance(value, list | tuple)
            else self._ref(value)
            for key, value in op.inputs.items()
            if key in ("pred", "loop_vars")
        }
        run = _CONTROL_FLOW[op.op_type](args, tuple(blocks))
        outputs = tuple((var.name, self._dtype(var)) for var in op.outputs)
        steps.append(Step(op.op_type, op.name, run, args, outputs, run))

    def _specialised(self, op: Any, step: Step) -> Step:
        """The step with a load-time plan where one applies, and fp16 rounding skipped for
        ops that only select fp16 values."""
        plan = self._plan(op, step)
        call = step.call if plan is None else plan
        exact = step.op_type in _SELECTING_OPS and self._all_fp16_inputs(op)
        return Step(
            step.op_type, step.name, step.kernel, step.args, step.outputs, call, exact, bool(plan)
        )

    def _plan(self, op: Any, step: Step) -> Callable[[Mapping[str, Any]], Any] | None:
        """A plan of an op whose only runtime input is a statically shaped ``x``."""
        planner = PLANNERS.get(step.op_type)
        x = step.args.get("x")
        if planner is None or not isinstance(x, Ref) or x.name is None:
            return None
        consts: dict[str, Any] = {}
        for key, ref in step.args.items():
            if key == "x":
                continue
            if not isinstance(ref, Ref) or ref.name is not None:
                return None
            consts[key] = ref.value
        shape = tuple(op.inputs["x"].shape)
        if not all(isinstance(d, int) for d in shape):
            return None
        planned = planner(consts, shape)
        if planned is None:
            return None
        source = x.name

        def call(env: Mapping[str, Any]) -> Any:
            return planned(env[source])

        return call

    def _all_fp16_inputs(self, op: Any) -> bool:
        float_inputs = [
            self._dtype(var)
            for value in op.inputs.values()
            for var in (value if isinstance(value, list | tuple) else (value,))
            if np.dtype(self._dtype(var)).kind == "f"
        ]
        return bool(float_inputs) and all(dtype == np.float16 for dtype in float_inputs)

    def _ref(self, var: Any) -> Ref:
        if var.name in self.constants:
            return Ref(value=_compute_value(self.constants[var.name]))
        return Ref(name=var.name)

    def with_float_ops(self, ops: Mapping[str, Mapping[str, np.ndarray]]) -> CompiledFunction:
        """A copy in which the ops with an output named in ``ops`` compute in float: the ops
        reading their outputs skip the ``quantize`` -> ``dequantize`` pair between (they read
        the float tensor), and their constant arguments named in ``ops[output]`` (a float
        weight, a bias) replace the program's. Their own inputs stay as quantized, unless a
        pass computed the op in units of an input's scale (an ``add`` whose input dequantize
        scale was set to 1): then it reads its inputs unquantized, in float units."""
        produced = {name: step for step in self.steps for name, _ in step.outputs}
        floated = set(ops) & set(produced)

        def quantized_source(ref: Ref) -> str | None:
            """The tensor a quantize -> dequantize pair made ``ref`` from, if it is one."""
            dequantize = produced.get(ref.name or "")
            if dequantize is None or dequantize.op_type != "dequantize":
                return None
            quantize = produced.get(_arg_name(dequantize, "input"))
            if quantize is None or quantize.op_type != "quantize":
                return None
            return _arg_name(quantize, "input")

        def edited(step: Step) -> Step:
            own = any(name in floated for name, _ in step.outputs)
            replaced = {k: v for name, _ in step.outputs for k, v in ops.get(name, {}).items()}
            unquantized_inputs = own and _reads_unit_dequantize(step, produced)
            changed = False

            def arg(key: str, ref: Ref) -> Ref:
                nonlocal changed
                if key in replaced:
                    changed = True
                    return Ref(value=np.asarray(replaced[key]))
                source = quantized_source(ref)
                if source is None or not (unquantized_inputs or source in floated):
                    return ref
                changed = True
                return Ref(name=source)

            args: dict[str, Ref | tuple[Ref, ...]] = {
                key: tuple(arg(key, v) for v in value)
                if isinstance(value, tuple)
                else arg(key, value)
                for key, value in step.args.items()
            }
            if not changed:
                return step
            return replace(step, args=args, call=_generic_call(step.kernel, args), planned=False)

        copied = copy.copy(self)
        copied.steps = [edited(step) for step in self.steps]
        return copied

    def rescaled_outputs(self) -> set[str]:
        """Outputs of the ``add``/``sub`` steps that read an input through a dequantize of
        scale 1, and of a ``relu`` that alone reads one: coremltools' pass
        ``distributive_quantized_binary_op_scale_normalization`` sets that scale to 1 and
        divides the others by the original, so these tensors are the true ones divided by a
        scale the program no longer holds (the quantized integers around them are exact)."""
        produced = {name: step for step in self.steps for name, _ in step.outputs}
        readers: dict[str, list[Step]] = {}
        for step in self.steps:
            for ref in step.args.values():
                if isinstance(ref, Ref) and ref.name:
                    readers.setdefault(ref.name, []).append(step)
        found: set[str] = set()
        for step in self.steps:
            if step.op_type not in ("add", "sub") or not _reads_unit_dequantize(step, produced):
                continue
            output = step.outputs[0][0]
            found.add(output)
            after = readers.get(output, [])
            if len(after) == 1 and after[0].op_type == "relu":
                found.add(after[0].outputs[0][0])
        return found

    def run(
        self,
        feeds: Mapping[str, np.ndarray],
        capture: Iterable[str] | None = None,
        states: Mapping[str, Any] | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Outputs by name, and the captured intermediate tensors (all when ``capture`` is
        an empty collection, none when None). ``states``: a ``StateBuffer`` for each state
        input, updated in place."""
        env: dict[str, Any] = dict(self.constants)
        for port in self.inputs:
            env[port.name] = _as_dtype(np.asarray(feeds[port.name]), port.dtype)
        for port in self.states:
            env[port.name] = (states or {})[port.name]
        wanted = None if capture is None else set(capture)
        captured: dict[str, Any] = {}
        for step in self.steps:
            for (name, dtype), value in zip(step.outputs, _execute(step, env), strict=True):
                env[name] = value
                if wanted is not None and (not wanted or name in wanted):
                    captured[name] = _exposed(value, dtype)
        outputs = {port.name: _exposed(env[port.name], port.dtype) for port in self.outputs}
        return outputs, captured


def _reads_unit_dequantize(step: Step, produced: Mapping[str, Step]) -> bool:
    """Whether ``step`` reads an input through a ``dequantize`` whose scale is 1."""
    for ref in step.args.values():
        source = produced.get(ref.name or "") if isinstance(ref, Ref) else None
        if source is not None and source.op_type == "dequantize":
            scale = source.args.get("scale")
            if isinstance(scale, Ref) and scale.name is None and np.all(scale.value == 1):
                return True
    return False


def _arg_name(step: Step, key: str) -> str:
    ref = step.args.get(key)
    return (ref.name or "") if isinstance(ref, Ref) else ""


def _all_constant(values: Iterable[Ref | tuple[Ref, ...]]) -> bool:
    for value in values:
        refs = value if isinstance(value, tuple) else (value,)
        if any(ref.name is not None for ref in refs):
            return False
    return True


def _compute_value(value: Any) -> Any:
    """What a kernel sees: fp16 tensors widened to fp32 (computation happens in fp32)."""
    if isinstance(value, np.ndarray) and value.dtype == np.float16:
        return value.astype(np.float32)
    return value


_SPLIT = np.float32(2.0**13 + 1)  # Veltkamp's splitter: keeps 24 - 13 = 11 significant bits
_SUBNORMAL_SHIFT = np.float32(0.75)  # x + 0.75 lies in [0.5, 1): its ulp is fp16's 2**-24
_FP16_NORMAL_BITS = np.uint32(0x38800000)  # float32 pattern of 2**-14
_FP16_LIMIT = np.float32(65520.0)  # the first value that rounds to inf


def fp16_values(array: np.ndarray) -> np.ndarray:
    """float32 numbers rounded to the nearest float16 (ties to even), kept as float32.

    Three float32 operations round every value in float16's normal range: Veltkamp's
    splitting ``t = x * (2**13 + 1); x_hi = t - (t - x)`` leaves 11 significant bits rounded to
    nearest even (checked against NumPy's float16 over every float32 of a binade, ties
    included). The values that become fp16 subnormals (0 < |x| < 2**-14) are rounded to the
    2**-24 grid by ``(x + 0.75) - 0.75``; values past 65520, inf and nan take NumPy's own
    conversion. Equal to ``array.astype(float16).astype(float32)`` bit for bit, several times
    faster.
    """
    x = np.ascontiguousarray(array, dtype=np.float32)
    flat = x.reshape(-1)
    with np.errstate(over="ignore", invalid="ignore"):  # huge values are redone below
        scaled = np.multiply(flat, _SPLIT)
        result = np.subtract(scaled, flat)
        np.subtract(scaled, result, out=result)
    magnitude = np.abs(flat, out=scaled)
    if not magnitude.max(initial=0.0) < _FP16_LIMIT:  # also true when a nan is present
        _convert_with_numpy(flat, result, np.flatnonzero(~(magnitude < _FP16_LIMIT)))
    pattern = magnitude.view(np.uint32)
    np.subtract(pattern, np.uint32(1), out=pattern)  # zero wraps to the top: not subnormal
    subnormal = np.flatnonzero(np.less(pattern, _FP16_NORMAL_BITS - np.uint32(1)))
    if subnormal.size:
        values = flat[subnormal]
        result[subnormal] = (values + _SUBNORMAL_SHIFT) - _SUBNORMAL_SHIFT
        negative_zero = np.flatnonzero(result[subnormal] == 0)
        result[subnormal[negative_zero]] = np.copysign(0.0, values[negative_zero])
    return result.reshape(x.shape)


def _convert_with_numpy(source: np.ndarray, result: np.ndarray, where: np.ndarray) -> None:
    with np.errstate(over="ignore", invalid="ignore"):
        result[where] = source[where].astype(np.float16).astype(np.float32)


def _exposed(value: Any, dtype: Any) -> Any:
    """A tensor as the program declares it (fp16 tensors are held as float32 inside)."""
    if dtype == np.float16 and isinstance(value, np.ndarray) and value.dtype != np.float16:
        return value.astype(np.float16)
    return value


def _resolve(ref: Ref, env: Mapping[str, Any]) -> Any:
    return ref.value if ref.name is None else env[ref.name]


def _generic_call(
    kernel: Kernel, args: Mapping[str, Ref | tuple[Ref, ...]]
) -> Callable[[Mapping[str, Any]], Any]:
    """``kernel`` called with its constant inputs bound once and its runtime ones looked up."""
    constant = {
        key: ref.value for key, ref in args.items() if isinstance(ref, Ref) and not ref.name
    }
    runtime = [(key, ref.name) for key, ref in args.items() if isinstance(ref, Ref) and ref.name]
    tuples = [(key, refs) for key, refs in args.items() if isinstance(refs, tuple)]

    def call(env: Mapping[str, Any]) -> Any:
        kwargs = dict(constant)
        for key, name in runtime:
            kwargs[key] = env[name]
        for key, refs in tuples:
            kwargs[key] = tuple(_resolve(ref, env) for ref in refs)
        return kernel(**kwargs)

    return call


def _execute(step: Step, env: Mapping[str, Any]) -> tuple[Any, ...]:
    try:
        result = step.call(env)
    except Exception as exc:
        raise RuntimeError(f"op {step.op_type} {step.name!r} failed: {exc}") from exc
    results = result if isinstance(result, tuple) else (result,)
    if step.exact_fp16:
        return results
    return tuple(
        _as_dtype(value, dtype) for value, (_, dtype) in zip(results, step.outputs, strict=True)
    )


def _as_dtype(value: Any, dtype: Any) -> Any:
    if dtype is object or isinstance(value, str | dict):
        return value
    if dtype == np.float16:
        return fp16_values(np.asarray(value))
    if isinstance(value, np.ndarray) and value.dtype == dtype:
        return value
    return np.asarray(value).astype(dtype)


def _python_value(value: Any) -> Any:
    """Const values: strings and scalars as Python values, tensors as arrays."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "US" and value.ndim == 0:
        return str(value)
    if isinstance(value, np.str_ | str):
        return str(value)
    if isinstance(value, np.ndarray) and value.dtype.kind in "US":
        return [str(v) for v in value.ravel()]
    if isinstance(value, np.generic):
        return value.item() if value.dtype.kind in "bi" else value
    return value
