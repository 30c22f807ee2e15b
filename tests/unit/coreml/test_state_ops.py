"""Stateful programs (iOS18 states) in the Core ML emulator: a state starts at zero, each
prediction reads and updates it (an accumulator and a key-value cache written one row per
step with ``slice_update``), two states from ``make_state`` are independent, and a prediction
without a state is refused in one line."""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.coreml._mil import IOS18, ct, mb, types

from edgepack.emulators.coreml import CoreMLEmulator  # isort: skip


def _stateful(body, state_shape, input_shape):  # type: ignore[no-untyped-def]
    program = mb.program(
        input_specs=[
            mb.StateTensorSpec(state_shape, dtype=types.fp16),
            mb.TensorSpec(input_shape, dtype=types.fp16),
        ],
        opset_version=IOS18,
    )(body)
    mlmodel = ct.convert(
        program,
        convert_to="mlprogram",
        minimum_deployment_target=IOS18,
        compute_precision=ct.precision.FLOAT16,
        skip_model_load=True,
    )
    return CoreMLEmulator(mlmodel)


def _accumulator(total_so_far, x):  # type: ignore[no-untyped-def]
    total = mb.add(x=mb.read_state(input=total_so_far), y=x)
    mb.coreml_update_state(state=total_so_far, value=total)
    return mb.mul(x=total, y=np.float16(2))


def test_accumulator_state_lives_across_predictions() -> None:
    emulator = _stateful(_accumulator, (2, 3), (2, 3))
    assert emulator.state_names == ["total_so_far"] and emulator.input_names == ["x"]
    state = emulator.make_state()
    np.testing.assert_array_equal(state.read("total_so_far"), np.zeros((2, 3)))
    x = np.arange(6, dtype=np.float16).reshape(2, 3)
    for step in range(1, 4):
        (out,) = emulator.predict({"x": x}, state=state).values()
        np.testing.assert_array_equal(out, 2 * step * x)
        np.testing.assert_array_equal(state.read("total_so_far"), step * x)
    other = emulator.make_state()  # independent and fresh
    (out,) = emulator.predict({"x": x}, state=other).values()
    np.testing.assert_array_equal(out, 2 * x)
    np.testing.assert_array_equal(state.read("total_so_far"), 3 * x)


def test_key_value_cache_written_one_row_per_step() -> None:
    rows, width = 4, 3

    def body(cache, token):  # type: ignore[no-untyped-def]
        current = mb.read_state(input=cache)
        # the next free row is the number of non-zero rows (tokens here are never zero)
        filled = mb.reduce_sum(
            x=mb.cast(x=mb.not_equal(x=mb.reduce_sum(x=current, axes=[1]), y=np.float16(0)),
                      dtype="int32"),
            axes=[0], keep_dims=True,
        )  # fmt: skip
        begin = mb.concat(values=[filled, np.array([0], np.int32)], axis=0)
        end = mb.concat(values=[mb.add(x=filled, y=1), np.array([width], np.int32)], axis=0)
        updated = mb.slice_update(x=current, update=token, begin=begin, end=end)
        mb.coreml_update_state(state=cache, value=updated)
        return mb.reduce_sum(x=updated, axes=[0])

    emulator = _stateful(body, (rows, width), (1, width))
    state = emulator.make_state()
    tokens = [np.full((1, width), k + 1, np.float16) for k in range(rows)]
    for k, token in enumerate(tokens):
        (summed,) = emulator.predict({"token": token}, state=state).values()
        np.testing.assert_array_equal(summed, np.full(width, sum(range(1, k + 2))))
    np.testing.assert_array_equal(state.read("cache"), np.concatenate(tokens))


def test_prediction_without_state_is_refused() -> None:
    emulator = _stateful(_accumulator, (2,), (2,))
    with pytest.raises(ValueError, match=r"stateful .*make_state"):
        emulator.predict({"x": np.ones(2, np.float16)})
