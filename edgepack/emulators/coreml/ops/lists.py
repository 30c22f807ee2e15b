"""Tensor lists (MIL ``make_list``, ``list_length``, ``list_read``, ``list_write``,
``list_gather``, ``list_scatter``): the TensorArray of TensorFlow's loops.

Semantics from coremltools' op definitions and its op tests (``ops/tests/iOS14/
test_control_flow.py``): a new list holds ``init_length`` zero elements; writing past the end
of a ``dynamic_length`` list grows it, the new elements zero; reading an element never written
gives zeros. Lists are values, as every MIL variable is: a write returns a new list and leaves
its input as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TensorList:
    """An immutable list of same-shaped tensors (``None``: an element never written)."""

    items: tuple[np.ndarray | None, ...]
    elem_shape: tuple[int, ...] | None  # None until known (a symbolic shape at build time)
    dynamic: bool

    def element(self, index: int) -> np.ndarray:
        if not 0 <= index < len(self.items):
            raise IndexError(f"list index {index} out of range (length {len(self.items)})")
        item = self.items[index]
        if item is not None:
            return item
        return np.zeros(self._shape(), np.float32)

    def _shape(self) -> tuple[int, ...]:
        if self.elem_shape is not None:
            return self.elem_shape
        written = next((item for item in self.items if item is not None), None)
        if written is None:
            raise ValueError("read of a list element whose shape is unknown: nothing written yet")
        return tuple(written.shape)

    def written(self, updates: dict[int, np.ndarray]) -> TensorList:
        items = list(self.items)
        end = max(updates) + 1 if updates else 0
        if end > len(items):
            if not self.dynamic:
                raise IndexError(f"write at {end - 1} past the end of a fixed-length list")
            items.extend([None] * (end - len(items)))
        for index, value in updates.items():
            if index < 0:
                raise IndexError(f"list index {index} is negative")
            items[index] = np.asarray(value, np.float32)
        return TensorList(tuple(items), self.elem_shape, self.dynamic)


def make_list(
    init_length: Any = 1,
    dynamic_length: bool = True,
    elem_shape: Any = (),
    dtype: str = "fp32",
) -> TensorList:
    """``init_length`` elements, zero until written."""
    dims = [np.asarray(d) for d in (elem_shape or ())]
    known = all(d.dtype.kind in "iu" and int(d) >= 0 for d in dims)
    shape = tuple(int(d) for d in dims) if known else None
    return TensorList((None,) * int(np.asarray(init_length)), shape, bool(dynamic_length))


def list_length(ls: TensorList) -> np.ndarray:
    return np.array(len(ls.items), np.int32)


def list_read(ls: TensorList, index: Any) -> np.ndarray:
    return ls.element(int(np.asarray(index)))


def list_write(ls: TensorList, index: Any, value: np.ndarray) -> TensorList:
    return ls.written({int(np.asarray(index)): value})


def list_gather(ls: TensorList, indices: Any) -> np.ndarray:
    return np.stack([ls.element(int(i)) for i in np.atleast_1d(np.asarray(indices))])


def list_scatter(ls: TensorList, indices: Any, value: np.ndarray) -> TensorList:
    positions = [int(i) for i in np.atleast_1d(np.asarray(indices))]
    return ls.written(dict(zip(positions, np.asarray(value), strict=True)))


KERNELS: dict[str, Callable[..., Any]] = {
    "make_list": make_list,
    "list_length": list_length,
    "list_read": list_read,
    "list_write": list_write,
    "list_gather": list_gather,
    "list_scatter": list_scatter,
}
