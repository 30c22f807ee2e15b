"""Model state (iOS18 ``read_state``, ``coreml_update_state``): buffers that live across
predictions, such as a transformer's key-value cache.

A state input of the program is bound to a :class:`StateBuffer` (from
``CoreMLEmulator.make_state``, zeros at first, as Core ML's ``MLModel.make_state`` gives);
``read_state`` copies the buffer's content out, ``coreml_update_state`` writes a value into it
and returns that value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


class StateBuffer:
    """One state tensor, mutable in place (fp16 states hold float32 values that are exactly
    fp16 numbers, as every fp16 tensor does in the interpreter)."""

    def __init__(self, value: np.ndarray) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"StateBuffer(shape={self.value.shape}, dtype={self.value.dtype})"


def read_state(input: StateBuffer) -> np.ndarray:  # MIL names the input "input"
    return np.array(input.value, copy=True)


def coreml_update_state(state: StateBuffer, value: np.ndarray) -> np.ndarray:
    if np.shape(value) != state.value.shape:
        raise ValueError(f"state update of shape {np.shape(value)} for a {state.value.shape} state")
    state.value = np.array(value, dtype=state.value.dtype, copy=True)
    return value


KERNELS: dict[str, Callable[..., Any]] = {
    "read_state": read_state,
    "coreml_update_state": coreml_update_state,
}
