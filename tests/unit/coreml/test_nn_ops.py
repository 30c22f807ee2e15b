"""Convolution, pooling, normalization, linear algebra and attention kernels of the Core ML
emulator against onnxruntime, TensorFlow and NumPy references (FP32 programs)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.coreml._mil import (
    IOS15,
    IOS17,
    IOS18,
    assert_close,
    mb,
    randn,
    run1,
)
from tests.unit.coreml._mil import ort_run as ort

_ONNX_AUTO_PAD = {"same": "SAME_UPPER", "same_lower": "SAME_LOWER", "valid": "VALID"}


def _onnx_pads(pad: list[int]) -> list[int]:
    """MIL ``[b0, e0, b1, e1]`` -> ONNX ``[b0, b1, e0, e1]``."""
    return [*pad[0::2], *pad[1::2]]


def _same_pads(
    pad_type: str, sizes: tuple[int, ...], kernel: tuple[int, ...], strides: list, dilations: list
) -> list[int]:
    """MIL ``same``/``same_lower`` as explicit MIL pads, from coremltools' documented formula:
    ``total = max(0, s * ceil(i / s) - i + k_eff - s)``; ``same`` puts the odd pixel at the end,
    ``same_lower`` at the start."""
    pads = []
    for i, k, s, d in zip(sizes, kernel, strides, dilations, strict=True):
        k_eff = (k - 1) * d + 1
        total = max(0, s * -(-i // s) - i + k_eff - s)
        small, large = total // 2, total - total // 2
        pads += [small, large] if pad_type == "same" else [large, small]
    return pads


def _ort_conv_attributes(
    pad_type: str, pad: list[int] | None, strides: list[int], dilations: list[int], groups: int
) -> dict:
    attributes = {"strides": strides, "dilations": dilations, "group": groups}
    if pad_type == "custom":
        attributes["pads"] = _onnx_pads(pad or [])
    elif pad_type != "valid" and any(d > 1 for d in dilations):
        raise AssertionError("onnxruntime has no dilated SAME padding: pass explicit pads")
    else:
        attributes["auto_pad"] = _ONNX_AUTO_PAD[pad_type]
    return attributes


# (x shape, weight shape, strides, dilations, groups, pad_type, pad, bias)
CONV_CASES = {
    "2d-valid": ((2, 4, 9, 7), (6, 4, 3, 3), [1, 1], [1, 1], 1, "valid", None, True),
    "2d-same-stride": ((1, 4, 9, 7), (5, 4, 3, 2), [2, 3], [1, 1], 1, "same", None, True),
    "2d-same-even-kernel": ((1, 3, 8, 7), (4, 3, 4, 2), [1, 1], [1, 1], 1, "same", None, False),
    "2d-same_lower": ((1, 3, 8, 7), (4, 3, 4, 2), [2, 1], [1, 1], 1, "same_lower", None, True),
    "2d-custom": ((2, 3, 7, 6), (4, 3, 3, 3), [1, 2], [1, 1], 1, "custom", [1, 2, 0, 3], True),
    "2d-dilated": ((1, 2, 11, 10), (3, 2, 3, 3), [1, 1], [2, 3], 1, "same", None, True),
    "2d-dilated-stride": ((1, 2, 11, 10), (3, 2, 2, 3), [2, 2], [3, 2], 1, "valid", None, False),
    "2d-groups": ((1, 6, 7, 7), (4, 3, 3, 3), [1, 1], [1, 1], 2, "same", None, True),
    "2d-depthwise": ((2, 4, 7, 9), (4, 1, 3, 3), [2, 2], [1, 1], 4, "same", None, True),
    "2d-depthwise-x2": (
        (1, 3, 6, 5),
        (6, 1, 3, 2),
        [1, 1],
        [1, 1],
        3,
        "custom",
        [2, 1, 0, 1],
        True,
    ),
    "2d-1x1": ((1, 5, 4, 3), (7, 5, 1, 1), [1, 1], [1, 1], 1, "valid", None, True),
    "2d-same-stride-over-kernel": (
        (1, 2, 7, 8),
        (3, 2, 1, 2),
        [3, 3],
        [1, 1],
        1,
        "same",
        None,
        True,
    ),
    "1d-valid": ((2, 3, 11), (4, 3, 3), [1], [1], 1, "valid", None, True),
    "1d-same-stride": ((1, 3, 11), (4, 3, 4), [3], [1], 1, "same", None, True),
    "1d-same_lower-dilated": ((1, 2, 10), (2, 2, 2), [1], [3], 1, "same_lower", None, False),
    "1d-custom-groups": ((1, 4, 9), (6, 2, 3), [2], [1], 2, "custom", [3, 1], True),
}


@pytest.mark.parametrize("case", CONV_CASES.values(), ids=CONV_CASES.keys())
def test_conv_matches_onnxruntime(case: tuple) -> None:
    x_shape, w_shape, strides, dilations, groups, pad_type, pad, with_bias = case
    x = randn(*x_shape, seed=1)
    w = randn(*w_shape, seed=2)
    b = randn(w_shape[0], seed=3)
    extra = {"pad": pad} if pad is not None else {}
    if with_bias:
        extra["bias"] = b

    def body(x):
        return mb.conv(
            x=x,
            weight=w,
            strides=strides,
            dilations=dilations,
            groups=groups,
            pad_type=pad_type,
            **extra,
        )

    out = run1(body, [x], expect_ops=["conv"])
    if pad_type.startswith("same") and any(d > 1 for d in dilations):
        # onnxruntime has no dilated auto_pad: the documented MIL padding, made explicit
        pad_type, pad = "custom", _same_pads(pad_type, x_shape[2:], w_shape[2:], strides, dilations)
    attributes = _ort_conv_attributes(pad_type, pad, strides, dilations, groups)
    initializers = {"w": w, **({"b": b} if with_bias else {})}
    expected = ort("Conv", {"x": x}, attributes, initializers)
    assert_close(out, expected, rtol=1e-5)


def test_conv_runtime_weight() -> None:
    """A weight fed at run time (allowed without dilations)."""
    x, w = randn(2, 4, 6, 5, seed=40), randn(4, 2, 3, 2, seed=41)
    out = run1(
        lambda x, w: mb.conv(x=x, weight=w, groups=2, strides=[1, 2], pad_type="same"),
        [x, w],
        expect_ops=["conv"],
    )
    attributes = _ort_conv_attributes("same", None, [1, 2], [1, 1], 2)
    assert_close(out, ort("Conv", {"x": x, "w": w}, attributes), rtol=1e-5)


def test_conv_same_lower_on_ios15_is_rejected_by_the_builder() -> None:
    """iOS15 conv has no ``same_lower`` (coremltools' definition): nothing to emulate there."""
    with pytest.raises(ValueError, match="same_lower"):
        run1(
            lambda x: mb.conv(x=x, weight=randn(2, 1, 2, 2), pad_type="same_lower"),
            [randn(1, 1, 4, 4)],
            target=IOS15,
        )


# conv_transpose: weight (C_in, C_out / groups, *K) as in MIL and ONNX.
# (x shape, weight shape, strides, dilations, groups, pad_type, pad)
CONV_TRANSPOSE_ORT_CASES = {
    "2d-valid": ((2, 3, 4, 5), (3, 4, 3, 3), [1, 1], [1, 1], 1, "valid", None),
    "2d-valid-stride": ((1, 3, 4, 3), (3, 2, 3, 2), [2, 3], [1, 1], 1, "valid", None),
    "2d-custom-stride": ((1, 2, 5, 4), (2, 3, 4, 3), [2, 2], [1, 1], 1, "custom", [1, 2, 0, 1]),
    "2d-dilated": ((1, 2, 4, 4), (2, 2, 3, 2), [1, 2], [2, 2], 1, "custom", [1, 1, 2, 0]),
    "2d-groups": ((1, 4, 3, 5), (4, 3, 3, 3), [2, 1], [1, 1], 2, "custom", [1, 1, 1, 1]),
    "2d-depthwise": ((1, 3, 4, 4), (3, 1, 2, 2), [2, 2], [1, 1], 3, "valid", None),
    "1d-valid-stride": ((2, 3, 5), (3, 2, 4), [3], [1], 1, "valid", None),
    "1d-custom": ((1, 2, 6), (2, 3, 3), [2], [1], 1, "custom", [2, 1]),
}


@pytest.mark.parametrize(
    "case", CONV_TRANSPOSE_ORT_CASES.values(), ids=CONV_TRANSPOSE_ORT_CASES.keys()
)
def test_conv_transpose_matches_onnxruntime(case: tuple) -> None:
    x_shape, w_shape, strides, dilations, groups, pad_type, pad = case
    x = randn(*x_shape, seed=4)
    w = randn(*w_shape, seed=5)
    b = randn(w_shape[1] * groups, seed=6)
    extra = {"pad": pad} if pad is not None else {}

    def body(x):
        return mb.conv_transpose(
            x=x,
            weight=w,
            bias=b,
            strides=strides,
            dilations=dilations,
            groups=groups,
            pad_type=pad_type,
            **extra,
        )

    out = run1(body, [x], expect_ops=["conv_transpose"])
    attributes = {"strides": strides, "dilations": dilations, "group": groups}
    attributes["pads"] = _onnx_pads(pad) if pad is not None else [0] * (2 * len(strides))
    expected = ort("ConvTranspose", {"x": x}, attributes, {"w": w, "b": b})
    assert_close(out, expected, rtol=1e-5)


# TensorFlow's conv2d_transpose: coremltools' TF frontend maps Conv2DBackpropInput with
# padding SAME/VALID and an explicit output shape to MIL conv_transpose(pad_type, output_shape).
# (x NCHW shape, kernel (kh, kw), C_out, strides, tf padding, output H, W or None)
CONV_TRANSPOSE_TF_CASES = {
    "same-stride2": ((1, 3, 4, 5), (3, 3), 2, [2, 2], "SAME", None),
    "same-stride-even-kernel": ((2, 2, 3, 4), (4, 2), 3, [2, 3], "SAME", None),
    "same-stride1": ((1, 2, 5, 4), (3, 2), 2, [1, 1], "SAME", None),
    "same-output-shape-odd": ((1, 2, 3, 4), (3, 3), 2, [2, 2], "SAME", (5, 7)),
    "same-output-shape-even-kernel": ((1, 2, 3, 3), (4, 4), 2, [3, 2], "SAME", (8, 5)),
    "valid-output-shape-larger": ((1, 2, 3, 4), (3, 2), 2, [2, 3], "VALID", (8, 12)),
}


@pytest.mark.parametrize(
    "case", CONV_TRANSPOSE_TF_CASES.values(), ids=CONV_TRANSPOSE_TF_CASES.keys()
)
def test_conv_transpose_same_and_output_shape_match_tensorflow(case: tuple) -> None:
    import tensorflow as tf

    x_shape, kernel, c_out, strides, padding, out_hw = case
    x = randn(*x_shape, seed=7)
    w = randn(x_shape[1], c_out, *kernel, seed=8)
    n, _, h, wd = x_shape
    if out_hw is None:
        out_hw = (h * strides[0], wd * strides[1])
    extra = {}
    if case[-1] is not None:
        extra["output_shape"] = [n, c_out, *out_hw]

    def body(x):
        return mb.conv_transpose(x=x, weight=w, strides=strides, pad_type=padding.lower(), **extra)

    out = run1(body, [x], expect_ops=["conv_transpose"])
    expected = tf.nn.conv2d_transpose(
        x.transpose(0, 2, 3, 1),
        w.transpose(2, 3, 1, 0),  # (kh, kw, C_out, C_in)
        output_shape=[n, *out_hw, c_out],
        strides=[1, *strides, 1],
        padding=padding,
    ).numpy()
    assert_close(out, expected.transpose(0, 3, 1, 2), rtol=1e-5)


# Pools. (x shape, kernel, strides, pad_type, pad, ceil_mode)
POOL_CASES = {
    "valid": ((2, 3, 7, 8), [2, 2], [2, 2], "valid", None, False),
    "valid-overlap": ((1, 2, 9, 7), [3, 2], [2, 1], "valid", None, False),
    "same": ((1, 2, 7, 8), [3, 3], [2, 2], "same", None, False),
    "same-even-kernel": ((1, 2, 7, 5), [2, 4], [1, 2], "same", None, False),
    "same_lower": ((1, 2, 7, 5), [2, 4], [2, 2], "same_lower", None, False),
    "custom": ((1, 2, 6, 7), [3, 3], [2, 2], "custom", [1, 1, 2, 0], False),
    "ceil-valid": ((1, 2, 7, 8), [2, 3], [2, 2], "valid", None, True),
    "ceil-custom": ((1, 2, 6, 9), [3, 3], [2, 3], "custom", [1, 1, 1, 1], True),
    "ceil-custom-drop-last": ((1, 1, 5, 5), [2, 2], [2, 2], "custom", [1, 1, 1, 1], True),
    "1d-same": ((2, 3, 9), [4], [3], "same", None, False),
    "1d-ceil": ((1, 3, 10), [3], [2], "custom", [1, 1], True),
}


def _pool_attributes(
    kernel: list[int], strides: list[int], pad_type: str, pad: list[int] | None, ceil: bool
) -> dict:
    attributes = {"kernel_shape": kernel, "strides": strides, "ceil_mode": int(ceil)}
    if pad_type == "custom":
        attributes["pads"] = _onnx_pads(pad or [])
    else:
        attributes["auto_pad"] = _ONNX_AUTO_PAD[pad_type]
    return attributes


def _pool_kwargs(
    kernel: list[int], strides: list[int], pad_type: str, pad: list[int] | None, ceil: bool
) -> dict:
    kwargs = {"kernel_sizes": kernel, "strides": strides, "pad_type": pad_type, "ceil_mode": ceil}
    if pad is not None:
        kwargs["pad"] = pad
    return kwargs


@pytest.mark.parametrize("case", POOL_CASES.values(), ids=POOL_CASES.keys())
def test_max_pool_matches_onnxruntime(case: tuple) -> None:
    x_shape, *params = case
    x = randn(*x_shape, seed=9) - 3.0  # all-negative windows make padding values matter
    out = run1(lambda x: mb.max_pool(x=x, **_pool_kwargs(*params)), [x], expect_ops=["max_pool"])
    expected = ort("MaxPool", {"x": x}, _pool_attributes(*params))
    assert_close(out, expected, rtol=1e-5)


@pytest.mark.parametrize("exclude_padding", [False, True], ids=["count-pad", "exclude-pad"])
@pytest.mark.parametrize("case", POOL_CASES.values(), ids=POOL_CASES.keys())
def test_avg_pool_matches_onnxruntime(case: tuple, exclude_padding: bool) -> None:
    x_shape, *params = case
    x = randn(*x_shape, seed=10) + 2.0

    def body(x):
        return mb.avg_pool(
            x=x, exclude_padding_from_average=exclude_padding, **_pool_kwargs(*params)
        )

    out = run1(body, [x], expect_ops=["avg_pool"])
    attributes = {**_pool_attributes(*params), "count_include_pad": int(not exclude_padding)}
    expected = ort("AveragePool", {"x": x}, attributes)
    assert_close(out, expected, rtol=1e-5)


@pytest.mark.parametrize("case", POOL_CASES.values(), ids=POOL_CASES.keys())
def test_l2_pool_matches_onnxruntime_lp_pool(case: tuple) -> None:
    x_shape, *params = case
    x = randn(*x_shape, seed=11)
    out = run1(lambda x: mb.l2_pool(x=x, **_pool_kwargs(*params)), [x], expect_ops=["l2_pool"])
    expected = ort("LpPool", {"x": x}, {**_pool_attributes(*params), "p": 2})
    assert_close(out, expected, rtol=1e-5)


# Normalization: NumPy references in float64 from coremltools' documented formulas.


@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (2, 3, 7), (1, 2, 3, 4, 2)])
@pytest.mark.parametrize("affine", [False, True])
def test_batch_norm(shape: tuple[int, ...], affine: bool) -> None:
    c = shape[1]
    x = randn(*shape, seed=12)
    mean, var = randn(c, seed=13), np.abs(randn(c, seed=14)) + 0.1
    gamma, beta = randn(c, seed=15), randn(c, seed=16)
    extra = {"gamma": gamma, "beta": beta} if affine else {}
    out = run1(
        lambda x: mb.batch_norm(x=x, mean=mean, variance=var, epsilon=1e-3, **extra),
        [x],
        expect_ops=["batch_norm"],
    )
    per_channel = (1, c) + (1,) * (len(shape) - 2)
    expected = (x - mean.reshape(per_channel).astype(np.float64)) / np.sqrt(
        var.reshape(per_channel).astype(np.float64) + 1e-3
    )
    if affine:
        expected = expected * gamma.reshape(per_channel) + beta.reshape(per_channel)
    assert_close(out, expected, rtol=1e-5)


@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (2, 3, 7)])
@pytest.mark.parametrize("affine", [False, True])
def test_instance_norm(shape: tuple[int, ...], affine: bool) -> None:
    c = shape[1]
    x = randn(*shape, seed=17) * 3 + 1
    gamma, beta = randn(c, seed=18), randn(c, seed=19)
    extra = {"gamma": gamma, "beta": beta} if affine else {}
    out = run1(
        lambda x: mb.instance_norm(x=x, epsilon=1e-4, **extra), [x], expect_ops=["instance_norm"]
    )
    axes = tuple(range(2, len(shape)))
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=axes, keepdims=True)
    var = ((x64 - mean) ** 2).mean(axis=axes, keepdims=True)
    expected = (x64 - mean) / np.sqrt(var + 1e-4)
    if affine:
        per_channel = (1, c) + (1,) * (len(shape) - 2)
        expected = expected * gamma.reshape(per_channel) + beta.reshape(per_channel)
    assert_close(out, expected, rtol=1e-5)


LAYER_NORM_CASES = {
    "last": ((2, 3, 6), [-1]),
    "last-two": ((2, 3, 4, 5), [2, 3]),
    "middle": ((2, 5, 3), [1]),
    "non-contiguous": ((2, 3, 4, 5), [-3, -1]),
    "first": ((4, 3, 2), [0]),
    "all": ((3, 4), [0, 1]),
}


@pytest.mark.parametrize("case", LAYER_NORM_CASES.values(), ids=LAYER_NORM_CASES.keys())
@pytest.mark.parametrize("affine", [False, True])
def test_layer_norm(case: tuple, affine: bool) -> None:
    shape, axes = case
    x = randn(*shape, seed=20) * 2 - 1
    positive = sorted(a % len(shape) for a in axes)
    normalized_shape = [shape[a] for a in positive]
    gamma, beta = randn(*normalized_shape, seed=21), randn(*normalized_shape, seed=22)
    extra = {"gamma": gamma, "beta": beta} if affine else {}
    out = run1(
        lambda x: mb.layer_norm(x=x, axes=axes, epsilon=1e-5, **extra),
        [x],
        expect_ops=["layer_norm"],
    )
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=tuple(positive), keepdims=True)
    var = ((x64 - mean) ** 2).mean(axis=tuple(positive), keepdims=True)
    expected = (x64 - mean) / np.sqrt(var + 1e-5)
    if affine:
        # gamma/beta have the shape x.shape[axes]: they vary along the normalised axes only
        broadcast = [shape[i] if i in positive else 1 for i in range(len(shape))]
        expected = expected * gamma.reshape(broadcast) + beta.reshape(broadcast)
    assert_close(out, expected, rtol=1e-5)


# Linear algebra.


@pytest.mark.parametrize("x_shape", [(5,), (3, 5), (2, 3, 5)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_linear(x_shape: tuple[int, ...], with_bias: bool) -> None:
    x = randn(*x_shape, seed=23)
    w, b = randn(4, 5, seed=24), randn(4, seed=25)
    extra = {"bias": b} if with_bias else {}
    out = run1(lambda x: mb.linear(x=x, weight=w, **extra), [x], expect_ops=["linear"])
    expected = x.astype(np.float64) @ w.T.astype(np.float64)
    if with_bias:
        expected = expected + b
    assert_close(out, expected, rtol=1e-5)


# (x shape, y shape, transpose_x, transpose_y)
MATMUL_CASES = {
    "2d": ((3, 4), (4, 5), False, False),
    "transpose_x": ((4, 3), (4, 5), True, False),
    "transpose_y": ((3, 4), (5, 4), False, True),
    "transpose-both": ((4, 3), (5, 4), True, True),
    "batched-broadcast": ((2, 1, 3, 4), (5, 4, 6), False, False),
    "batched-broadcast-transposed": ((3, 1, 4, 2), (1, 2, 5, 4), True, True),
    "x-1d": ((4,), (2, 4, 3), False, False),
    # y 1-D: coremltools' matmul type inference raises IndexError (cannot be built)
    "batch-mismatch-ones": ((1, 3, 4), (6, 4, 2), False, False),
}


def _np_matmul(x: np.ndarray, y: np.ndarray, tx: bool, ty: bool) -> np.ndarray:
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    if tx:
        x64 = np.swapaxes(x64, -1, -2)
    if ty:
        y64 = np.swapaxes(y64, -1, -2)
    return np.matmul(x64, y64)


@pytest.mark.parametrize("case", MATMUL_CASES.values(), ids=MATMUL_CASES.keys())
def test_matmul_both_runtime_inputs(case: tuple) -> None:
    x_shape, y_shape, tx, ty = case
    x, y = randn(*x_shape, seed=26), randn(*y_shape, seed=27)
    out = run1(
        lambda x, y: mb.matmul(x=x, y=y, transpose_x=tx, transpose_y=ty),
        [x, y],
        expect_ops=["matmul"],
    )
    assert_close(out, _np_matmul(x, y, tx, ty), rtol=1e-5)


@pytest.mark.parametrize("transpose_y", [False, True])
def test_matmul_constant_y(transpose_y: bool) -> None:
    x = randn(2, 3, 4, seed=28)
    y = randn(6, 4, seed=29) if transpose_y else randn(4, 6, seed=29)
    out = run1(lambda x: mb.matmul(x=x, y=y, transpose_y=transpose_y), [x])
    assert_close(out, _np_matmul(x, y, False, transpose_y), rtol=1e-5)


# einsum: coremltools supports the "nchw,nwhu->nchu" family (matrices on axes -1 and -3,
# the others batch, size-1 batch axes broadcast) and "chw,whr->chr".
EINSUM_CASES = {
    "rank4": ("nchw,nwhu->nchu", (2, 3, 4, 5), (2, 5, 4, 6)),
    "rank4-renamed": ("abcd,adce->abce", (1, 2, 3, 4), (1, 4, 3, 2)),
    "rank4-broadcast-batch": ("nchw,nwhu->nchu", (1, 3, 4, 5), (2, 5, 4, 6)),
    "rank4-broadcast-h": ("nchw,nwhu->nchu", (2, 3, 1, 5), (2, 5, 4, 6)),
    "rank3": ("chw,whr->chr", (3, 4, 5), (5, 4, 2)),
    "rank3-broadcast-h": ("chw,whr->chr", (3, 4, 5), (5, 1, 2)),
}


@pytest.mark.parametrize("case", EINSUM_CASES.values(), ids=EINSUM_CASES.keys())
def test_einsum(case: tuple) -> None:
    equation, x_shape, y_shape = case
    x, y = randn(*x_shape, seed=30), randn(*y_shape, seed=31)
    out = run1(lambda x, y: mb.einsum(values=(x, y), equation=equation), [x, y])
    # reference: explicit broadcast of the size-1 batch axes, then a batched matmul over
    # axes (-1 of x, -3 of y): out[..., c, h, u] = sum_w x[..., c, h, w] y[..., w, h, u]
    batch = np.broadcast_shapes(x_shape[:-3], y_shape[:-3])
    h = max(x_shape[-2], y_shape[-2])
    xb = np.broadcast_to(x, (*batch, x_shape[-3], h, x_shape[-1])).astype(np.float64)
    yb = np.broadcast_to(y, (*batch, y_shape[-3], h, y_shape[-1])).astype(np.float64)
    # move h in front: (..., h, c, w) @ (..., h, w, u) -> (..., h, c, u) -> (..., c, h, u)
    product = np.matmul(np.swapaxes(xb, -3, -2), np.swapaxes(yb, -3, -2))
    assert_close(out, np.swapaxes(product, -3, -2), rtol=1e-5)


# scaled_dot_product_attention (iOS18): softmax(Q K^T / sqrt(E) + mask) V, a bool mask keeps
# the True positions (PyTorch's definition, quoted by coremltools).


def _np_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None):
    q64, k64, v64 = (a.astype(np.float64) for a in (q, k, v))
    scores = q64 @ np.swapaxes(k64, -1, -2) / np.sqrt(q.shape[-1])
    if mask is not None:
        scores = np.where(mask, scores, -np.inf) if mask.dtype == bool else scores + mask
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return (weights / weights.sum(axis=-1, keepdims=True)) @ v64


@pytest.mark.parametrize("mask_kind", ["none", "float-input", "float-const", "bool-const"])
def test_scaled_dot_product_attention(mask_kind: str) -> None:
    q, k, v = randn(2, 3, 4, 8, seed=32), randn(2, 3, 5, 8, seed=33), randn(2, 3, 5, 6, seed=34)
    float_mask = randn(4, 5, seed=35) * 2
    bool_mask = np.tril(np.ones((4, 5), bool), k=1)
    if mask_kind == "none":
        out = run1(
            lambda q, k, v: mb.scaled_dot_product_attention(query=q, key=k, value=v),
            [q, k, v],
            target=IOS18,
            expect_ops=["scaled_dot_product_attention"],
        )
        mask = None
    elif mask_kind == "float-input":
        out = run1(
            lambda q, k, v, m: mb.scaled_dot_product_attention(
                query=q, key=k, value=v, attn_mask=m
            ),
            [q, k, v, float_mask],
            target=IOS18,
            expect_ops=["scaled_dot_product_attention"],
        )
        mask = float_mask
    else:
        mask = float_mask if mask_kind == "float-const" else bool_mask
        out = run1(
            lambda q, k, v: mb.scaled_dot_product_attention(
                query=q, key=k, value=v, attn_mask=mask
            ),
            [q, k, v],
            target=IOS18,
            expect_ops=["scaled_dot_product_attention"],
        )
    assert_close(out, _np_attention(q, k, v, mask), rtol=1e-4)  # exp: transcendental


def test_scaled_dot_product_attention_rank3_broadcast_mask() -> None:
    q, k, v = randn(3, 2, 4, seed=36), randn(3, 6, 4, seed=37), randn(3, 6, 5, seed=38)
    mask = (randn(1, 2, 6, seed=39) > -0.5) | np.eye(2, 6, dtype=bool)[None]
    out = run1(
        lambda q, k, v: mb.scaled_dot_product_attention(query=q, key=k, value=v, attn_mask=mask),
        [q, k, v],
        target=IOS18,
        expect_ops=["scaled_dot_product_attention"],
    )
    assert_close(out, _np_attention(q, k, v, mask), rtol=1e-4)  # exp: transcendental


def test_opset_of_programs_is_what_the_tests_ask_for() -> None:
    """The conversions above target the requested opset (a guard against a silent upgrade)."""
    from tests.unit.coreml._mil import build, convert

    model = convert(build(lambda x: mb.relu(x=x), [randn(2)], IOS17), IOS17)
    assert model.get_spec().mlProgram.functions["main"].opset == "CoreML7"
