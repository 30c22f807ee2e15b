"""Every kernel accepts, by keyword, every input its MIL op declares in each opset (iOS15 to
iOS18): the interpreter calls kernels with the op's input names (a NumPy ufunc, whose operands
are positional-only, cannot be a kernel as is)."""

from __future__ import annotations

import inspect

import pytest

from tests.unit.coreml._mil import IOS15, IOS16, IOS17, IOS18

from edgepack.emulators.coreml.ops import kernel_for, supported_ops  # isort: skip

_OPSETS = {IOS15: 15, IOS16: 16, IOS17: 17, IOS18: 18}


def _keyword_names(kernel: object) -> tuple[set[str], bool]:
    parameters = inspect.signature(kernel).parameters.values()  # type: ignore[arg-type]
    names = {p.name for p in parameters if p.kind is not p.POSITIONAL_ONLY}
    return names, any(p.kind is p.VAR_KEYWORD for p in parameters)


def _declared_inputs(op_type: str) -> dict[int, set[str]]:
    """MIL input names of ``op_type`` by opset (15..18)."""
    from coremltools.converters.mil.mil.ops.registry import SSAOpRegistry

    dialect_op = SSAOpRegistry.dialect_ops.get(op_type)  # coreml_update_state: every opset
    if dialect_op is not None:
        return {opset: set(dialect_op.input_spec.input_types) for opset in _OPSETS.values()}
    return {
        _OPSETS[target]: set(op_class.input_spec.input_types)
        for target, op_class in SSAOpRegistry.core_ops.get(op_type, {}).items()
        if op_class is not None and target in _OPSETS
    }


@pytest.mark.parametrize("op_type", supported_ops())
def test_kernel_takes_every_mil_input_by_name(op_type: str) -> None:
    declared = _declared_inputs(op_type)
    assert declared, f"{op_type} is not a MIL op of iOS15-iOS18"
    for opset, inputs in declared.items():
        kernel = kernel_for(op_type, opset)
        assert kernel is not None
        names, takes_any = _keyword_names(kernel)
        assert takes_any or inputs <= names, (
            f"{op_type} (iOS{opset}) lacks {sorted(inputs - names)}"
        )
