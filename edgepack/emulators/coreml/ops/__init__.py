"""Op kernels: MIL op type -> NumPy function of the op's named inputs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgepack.emulators.coreml.ops import (
    activation,
    elementwise,
    grid,
    image,
    lists,
    misc,
    nms,
    nn,
    quant,
    random,
    recurrent,
    reduction,
    scatter,
    states,
    tensor,
)

Kernel = Callable[..., Any]

KERNELS: dict[str, Kernel] = {
    **nn.KERNELS,
    **activation.KERNELS,
    **elementwise.KERNELS,
    **reduction.KERNELS,
    **tensor.KERNELS,
    **scatter.KERNELS,
    **nms.KERNELS,
    **image.KERNELS,
    **grid.KERNELS,
    **misc.KERNELS,
    **lists.KERNELS,
    **quant.KERNELS,
    **recurrent.KERNELS,
    **random.KERNELS,
    **states.KERNELS,
}
VERSIONED: dict[tuple[str, int], Kernel] = {
    **image.VERSIONED,
    **quant.VERSIONED,
    **scatter.VERSIONED,
    **nms.VERSIONED,
}


def kernel_for(op_type: str, opset: int) -> Kernel | None:
    """The kernel of ``op_type`` for a program of iOS ``opset`` (15..18), or None."""
    versions = sorted(v for (name, v) in VERSIONED if name == op_type and v <= opset)
    if versions:
        return VERSIONED[(op_type, versions[-1])]
    return KERNELS.get(op_type)


def supported_ops() -> list[str]:
    return sorted({*KERNELS, *(name for name, _ in VERSIONED)})
