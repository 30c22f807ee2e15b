"""Load-time plans of the Core ML emulator (``edgepack.emulators.coreml.plans``): each plan
must compute what its kernel computes (the kernels are checked against onnxruntime in
``test_nn_ops``), and the interpreter must pick it where it applies."""

from __future__ import annotations

import numpy as np
import pytest

from edgepack.emulators.coreml import CoreMLEmulator
from edgepack.emulators.coreml.ops import nn
from edgepack.emulators.coreml.plans import plan_conv, plan_max_pool
from tests.unit.coreml._mil import build, convert, mb, randn
from tests.unit.coreml._mil import ort_run as ort

# (x shape, weight shape, strides, dilations, groups, pad_type, pad)
CONV_PLANS = {
    "dense-3x3-same": ((1, 3, 9, 7), (5, 3, 3, 3), [1, 1], [1, 1], 1, "same", None),
    "dense-valid-batch2": ((2, 4, 8, 11), (6, 4, 3, 2), [1, 1], [1, 1], 1, "valid", None),
    "dense-custom-pads": ((1, 2, 6, 5), (3, 2, 2, 3), [1, 1], [1, 1], 1, "custom", [2, 0, 1, 3]),
    "dense-dilated-same_lower": (
        (1, 2, 10, 9),
        (4, 2, 3, 2),
        [1, 1],
        [2, 3],
        1,
        "same_lower",
        None,
    ),
    "dense-even-kernel-same": ((1, 3, 7, 8), (2, 3, 4, 4), [1, 1], [1, 1], 1, "same", None),
    "depthwise-3x3-same": ((1, 8, 15, 15), (8, 1, 3, 3), [1, 1], [1, 1], 8, "same", None),
    "depthwise-5x5-odd": ((2, 5, 7, 9), (5, 1, 5, 5), [1, 1], [1, 1], 5, "same", None),
    "depthwise-dilated-custom": (
        (1, 4, 9, 8),
        (4, 1, 3, 3),
        [1, 1],
        [2, 2],
        4,
        "custom",
        [1, 3, 0, 2],
    ),
    "pointwise": ((1, 6, 5, 7), (4, 6, 1, 1), [1, 1], [1, 1], 1, "valid", None),
    "pointwise-stride2-odd": ((2, 3, 9, 7), (5, 3, 1, 1), [2, 2], [1, 1], 1, "same", None),
}


@pytest.mark.parametrize("case", CONV_PLANS.values(), ids=CONV_PLANS.keys())
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
def test_conv_plan_equals_kernel(case: tuple, with_bias: bool) -> None:
    x_shape, w_shape, strides, dilations, groups, pad_type, pad = case
    x, w = randn(*x_shape, seed=1), randn(*w_shape, seed=2)
    bias = randn(w_shape[0], seed=3) if with_bias else None
    consts = {
        "weight": w,
        "bias": bias,
        "strides": np.array(strides),
        "dilations": np.array(dilations),
        "groups": groups,
        "pad_type": pad_type,
        "pad": None if pad is None else np.array(pad),
    }
    plan = plan_conv(consts, x_shape)
    assert plan is not None
    expected = nn.conv(x, **consts)
    for _ in range(2):  # the second call reuses the scratch buffers
        result = plan(x)
        assert result.shape == expected.shape
        np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-5)


def test_conv_plan_declines_what_it_does_not_cover() -> None:
    consts = {"weight": randn(6, 2, 3, 3), "groups": 2, "pad_type": "valid"}  # grouped, not dw
    assert plan_conv(consts, (1, 4, 8, 8)) is None
    strided = {"weight": randn(4, 3, 3, 3), "strides": np.array([2, 2]), "pad_type": "valid"}
    assert plan_conv(strided, (1, 3, 8, 8)) is None
    assert plan_conv({"weight": randn(4, 3, 3)}, (1, 3, 8)) is None  # 1-d


POOL_PLANS = {
    "3x3-s2-same-even": ((1, 4, 12, 10), [3, 3], [2, 2], "same", None),
    "3x3-s2-same-odd": ((2, 3, 9, 7), [3, 3], [2, 2], "same", None),
    "2x2-s2-valid": ((1, 2, 8, 9), [2, 2], [2, 2], "valid", None),
    "3x2-s1-custom": ((1, 3, 6, 7), [3, 2], [1, 1], "custom", [1, 1, 0, 1]),
    "3x3-s3-same_lower": ((1, 2, 10, 11), [3, 3], [3, 3], "same_lower", None),
}


@pytest.mark.parametrize("case", POOL_PLANS.values(), ids=POOL_PLANS.keys())
def test_max_pool_plan_equals_kernel_exactly(case: tuple) -> None:
    x_shape, kernel, strides, pad_type, pad = case
    x = randn(*x_shape, seed=4) - 3.0  # all negative: padding must never win the max
    consts = {
        "kernel_sizes": np.array(kernel),
        "strides": np.array(strides),
        "pad_type": pad_type,
        "pad": None if pad is None else np.array(pad),
    }
    plan = plan_max_pool(consts, x_shape)
    assert plan is not None
    expected = nn.max_pool(x, **consts)
    for _ in range(2):
        np.testing.assert_array_equal(plan(x), expected)
    assert plan_max_pool({**consts, "ceil_mode": True}, x_shape) is None


def test_interpreter_runs_plans_and_matches_onnxruntime() -> None:
    """A depthwise-separable block as coremltools converts it: the convs and the pool run
    their plans, and the whole program matches onnxruntime's Conv/MaxPool chain."""
    x = randn(1, 4, 14, 14, seed=5)
    dw, pw = randn(4, 1, 3, 3, seed=6), randn(8, 4, 1, 1, seed=7)

    def body(x: object) -> object:
        y = mb.conv(x=x, weight=dw, groups=4, pad_type="same")
        y = mb.conv(x=y, weight=pw)
        return mb.max_pool(x=y, kernel_sizes=[3, 3], strides=[2, 2], pad_type="same")

    emulator = CoreMLEmulator(convert(build(body, [x])))
    steps = emulator._function.steps
    assert [(s.op_type, s.planned) for s in steps] == [
        ("conv", True),
        ("conv", True),
        ("max_pool", True),
    ]
    out = emulator.predict({emulator.input_names[0]: x})[emulator.output_names[0]]
    y = ort("Conv", {"x": x}, {"group": 4, "pads": [1, 1, 1, 1]}, {"w": dw})
    y = ort("Conv", {"x": y}, {}, {"w": pw})
    y = ort("MaxPool", {"x": y}, {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [0, 0, 1, 1]})
    np.testing.assert_allclose(out, y, rtol=1e-5, atol=1e-5)


def test_one_emulator_serves_several_threads() -> None:
    """Plans keep their scratch buffers per thread: concurrent predictions do not mix."""
    from concurrent.futures import ThreadPoolExecutor

    w = randn(6, 3, 3, 3, seed=8)

    def body(x: object) -> object:
        return mb.max_pool(
            x=mb.conv(x=x, weight=w, pad_type="same"),
            kernel_sizes=[2, 2],
            strides=[2, 2],
            pad_type="valid",
        )

    inputs = [randn(1, 3, 16, 16, seed=s) for s in range(8)]
    emulator = CoreMLEmulator(convert(build(body, [inputs[0]])))
    name, out = emulator.input_names[0], emulator.output_names[0]
    expected = [emulator.predict({name: x})[out] for x in inputs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda x: emulator.predict({name: x})[out], inputs * 25))
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result, expected[i % len(inputs)])
