"""Activation ``quantize``/``dequantize`` (iOS17) and weight decompression (``constexpr_*``
ops made by coremltools' optimizers, iOS16 and iOS18 formats) in the Core ML emulator.

Weight compression: a small conv + linear model is compressed with ``ct.optimize.coreml``;
the test reads the stored compressed data (indices, LUTs, scales, masks) from the saved
program, decompresses it with its own NumPy code written from coremltools' op definitions, and
checks that the emulator's output equals a NumPy forward pass with those weights (FP32:
rtol 1e-5) and stays close to the uncompressed model's output.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from unittest import mock

import numpy as np
import pytest

from tests.unit.coreml._mil import (
    IOS16,
    IOS17,
    IOS18,
    CoreMLEmulator,
    assert_close,
    build,
    convert,
    ct,
    mb,
    program_op_types,
    randn,
    run,
)

# ----------------------------------------------------------------------------------------
# quantize / dequantize (iOS17): quantized = clip(round(x / scale) + zero_point), rounding
# half to even; dequantized = (q - zero_point) * scale.

# x / 0.5 lands exactly on .5 steps: 0.5, 1.5, -0.5, -1.5, 2.5, -2.5, 3.5, then saturation
HALF_STEPS = np.array([0.25, 0.75, -0.25, -0.75, 1.25, -1.25, 1.75, 100.0, -100.0], np.float32)


def _quantize_reference(x: np.ndarray, scale: Any, zero_point: Any, lo: int, hi: int) -> np.ndarray:
    steps = x.astype(np.float64) / scale
    nearest = np.floor(steps + 0.5)
    ties = (steps + 0.5) == nearest  # exactly halfway: go to the even neighbour
    nearest = np.where(ties & (nearest % 2 != 0), nearest - 1, nearest)
    return np.clip(nearest + zero_point, lo, hi).astype(np.int64)


@pytest.mark.parametrize(
    ("dtype", "zero_point", "lo", "hi"),
    [("int8", 0, -128, 127), ("int8", 3, -128, 127), ("uint8", 128, 0, 255), ("uint8", 0, 0, 255)],
    ids=["int8", "int8-zp3", "uint8-zp128", "uint8-zp0"],
)
def test_quantize_rounds_half_to_even_and_saturates(
    dtype: str, zero_point: int, lo: int, hi: int
) -> None:
    x = HALF_STEPS.reshape(1, -1)
    zp = np.array(zero_point, dtype=np.dtype(dtype))

    def body(x):
        q = mb.quantize(input=x, scale=np.float32(0.5), zero_point=zp, output_dtype=dtype)
        return q, mb.dequantize(input=q, scale=np.float32(0.5), zero_point=zp)

    # keep the op as written: the default passes turn uint8 with zero point 128 into int8
    # (and fail when the quantized tensor is a program output)
    pipeline = ct.PassPipeline.EMPTY if dtype == "uint8" else None
    quantized, restored = run(
        body, [x], target=IOS17, expect_ops=["quantize", "dequantize"], pass_pipeline=pipeline
    )
    expected = _quantize_reference(x, 0.5, zero_point, lo, hi)
    assert quantized.tolist() == expected.tolist()
    assert_close(restored, (expected - zero_point) * 0.5, rtol=1e-5)


def test_quantize_half_steps_explicitly() -> None:
    """round(x / 0.5) for x / 0.5 = 0.5, 1.5, -0.5, -1.5, 2.5, -2.5, 3.5 is 0, 2, -0, -2, 2,
    -2, 4 (half to even), then +3 and saturation at 127 / -128."""
    x = HALF_STEPS.reshape(1, -1)

    def body(x):
        return mb.quantize(
            input=x, scale=np.float32(0.5), zero_point=np.int8(3), output_dtype="int8"
        )

    (quantized,) = run(body, [x], target=IOS17)
    assert quantized.tolist() == [[3, 5, 3, 1, 5, 1, 7, 127, -128]]


def test_quantize_without_zero_point() -> None:
    x = HALF_STEPS.reshape(1, -1)
    (quantized,) = run(
        lambda x: mb.quantize(input=x, scale=np.float32(0.5), output_dtype="int8"),
        [x],
        target=IOS17,
    )
    assert quantized.tolist() == [[0, 2, 0, -2, 2, -2, 4, 127, -128]]


@pytest.mark.parametrize("axis", [1, -2])
def test_quantize_dequantize_per_channel(axis: int) -> None:
    x = (np.arange(-12, 12, dtype=np.float32) * 0.625).reshape(2, 3, 4)
    scale = np.array([0.5, 0.25, 1.0], np.float32)
    zp = np.array([0, -3, 5], np.int8)

    def body(x):
        q = mb.quantize(input=x, scale=scale, zero_point=zp, axis=axis, output_dtype="int8")
        return q, mb.dequantize(input=q, scale=scale, zero_point=zp, axis=axis)

    quantized, restored = run(body, [x], target=IOS17, expect_ops=["quantize", "dequantize"])
    s, z = scale.reshape(1, 3, 1), zp.reshape(1, 3, 1).astype(np.int64)
    expected = _quantize_reference(x, s, z, -128, 127)
    assert quantized.tolist() == expected.tolist()
    assert_close(restored, (expected - z) * s, rtol=1e-5)


# ----------------------------------------------------------------------------------------
# Weight compression.

C_IN, C_OUT, HIDDEN, CLASSES = 8, 16, 16, 12
W_CONV = randn(C_OUT, C_IN, 3, 3, seed=1)
B_CONV = randn(C_OUT, seed=2)
W_LIN = randn(CLASSES, HIDDEN, seed=3)
B_LIN = randn(CLASSES, seed=4)
X = randn(2, C_IN, 6, 7, seed=5)


def _model_body(x: Any) -> Any:
    y = mb.conv(x=x, weight=W_CONV, bias=B_CONV, pad_type="valid")
    y = mb.relu(x=y)
    y = mb.reduce_mean(x=y, axes=[2, 3])
    return mb.linear(x=y, weight=W_LIN, bias=B_LIN)


def _forward(w_conv: np.ndarray, w_lin: np.ndarray) -> np.ndarray:
    """The model in NumPy float64: valid 3x3 conv + bias, relu, spatial mean, linear + bias."""
    x = X.astype(np.float64)
    patches = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(2, 3))  # N C H W kh kw
    y = np.einsum("nchwij,ocij->nohw", patches, w_conv.astype(np.float64))
    y = np.maximum(y + B_CONV.reshape(1, -1, 1, 1), 0).mean(axis=(2, 3))
    return y @ w_lin.astype(np.float64).T + B_LIN


@pytest.fixture(scope="module", params=[IOS16, IOS18], ids=["iOS16", "iOS18"])
def base_model(request: pytest.FixtureRequest) -> tuple[Any, Any]:
    return convert(build(_model_body, [X], request.param), request.param), request.param


def _output(mlmodel: Any) -> np.ndarray:
    emulator = CoreMLEmulator(mlmodel)
    return emulator.predict({"x": X})[emulator.output_names[0]]


def _stored_constexpr_inputs(mlmodel: Any) -> dict[str, tuple[str, dict[str, np.ndarray]]]:
    """Weight name -> (constexpr op type, {input name: stored value}) read from the saved
    program (spec + weight blob)."""
    from coremltools.converters.mil.frontend.milproto.load import load as milproto_load

    spec = mlmodel.get_spec()
    program = milproto_load(spec, spec.specificationVersion, mlmodel.weights_dir)
    found = {}
    for op in program.functions["main"].operations:
        if op.op_type.startswith("constexpr_"):
            values = {name: np.asarray(var.val) for name, var in op.inputs.items()}
            consumer = op.outputs[0].child_ops[0]
            found[consumer.op_type] = (op.op_type, values)
    return found


def _unpack_lsb_first(packed: np.ndarray, nbits: int, count: int) -> np.ndarray:
    """Element k occupies bits [k * nbits, (k + 1) * nbits) of the byte stream, least
    significant bit first (coremltools' iOS16 packing notes)."""
    positions = np.arange(count)[:, None] * nbits + np.arange(nbits)[None, :]
    bits = (packed.astype(np.int64)[positions // 8] >> (positions % 8)) & 1
    return (bits << np.arange(nbits)).sum(axis=1)


def _block_expand(param: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``param[i0, j0, ...]`` at ``[i, j, ...]`` with ``i0 = floor(i / block)``, block =
    ``shape / param.shape`` per axis (coremltools' blockwise algorithm)."""
    index = np.ix_(*[np.arange(n) // (n // p) for n, p in zip(shape, param.shape, strict=True)])
    return param[index]


def _decompress(op_type: str, v: dict[str, np.ndarray], opset: int) -> np.ndarray:
    if op_type == "constexpr_affine_dequantize":
        q = v["quantized_data"].astype(np.float64)
        shape = [1] * q.ndim
        axis = int(v["axis"])
        shape[axis] = -1
        zp = np.broadcast_to(v["zero_point"].astype(np.float64), (q.shape[axis],)).reshape(shape)
        scale = np.broadcast_to(v["scale"].astype(np.float64), (q.shape[axis],)).reshape(shape)
        return (q - zp) * scale
    if op_type == "constexpr_blockwise_shift_scale":
        data = v["data"].astype(np.float64)
        offset = v.get("offset")
        if offset is not None:
            data = data - _block_expand(offset.astype(np.float64), data.shape)
        return _block_expand(v["scale"].astype(np.float64), data.shape) * data
    if op_type == "constexpr_lut_to_dense" and opset == 16:
        shape = tuple(int(s) for s in v["shape"])
        lut = v["lut"].ravel()
        nbits = int(np.log2(lut.size))
        return lut[_unpack_lsb_first(v["indices"], nbits, int(np.prod(shape)))].reshape(shape)
    if op_type == "constexpr_lut_to_dense":
        indices, lut = v["indices"].astype(np.int64), v["lut"]
        rank, vector = indices.ndim, lut.shape[-1]
        # the table of each index: block b = i // (indices.shape / lut.shape[:rank]) per axis
        blocks = [
            np.arange(n) // (n // b) for n, b in zip(indices.shape, lut.shape[:rank], strict=True)
        ]
        tables = lut[np.ix_(*blocks)]  # (*indices.shape, 2**nbits, vector)
        vectors = np.take_along_axis(tables, indices[..., None, None], axis=rank)[..., 0, :]
        if vector == 1:
            return vectors[..., 0]
        axis = int(v["vector_axis"]) % rank
        out_shape = list(indices.shape)
        out_shape[axis] *= vector
        dense = np.empty(out_shape, vectors.dtype)
        for k in range(vector):  # element k of each vector fills every vector-th position
            index = [slice(None)] * rank
            index[axis] = slice(k, None, vector)
            dense[tuple(index)] = vectors[..., k]
        return dense
    if op_type == "constexpr_sparse_to_dense":
        data = v["nonzero_data"]
        if opset == 16:
            shape = tuple(int(s) for s in v["shape"])
            flags = _unpack_lsb_first(v["mask"], 1, int(np.prod(shape))).astype(bool)
        else:
            shape = v["mask"].shape
            flags = v["mask"].ravel().astype(bool)
        dense = np.zeros(int(np.prod(shape)), data.dtype)
        dense[flags] = data  # row-major order of the set bits
        return dense.reshape(shape)
    raise AssertionError(f"unexpected {op_type}")


def _check_compressed(
    mlmodel: Any,
    uncompressed: Any,
    opset: int,
    expected_op: str,
    weight_check: Callable[[np.ndarray, np.ndarray, dict[str, np.ndarray]], None],
    max_relative_change: float,
) -> None:
    ops = program_op_types(mlmodel)
    assert ops.count(expected_op) == 2, ops  # both the conv and the linear weight
    stored = _stored_constexpr_inputs(mlmodel)
    assert {"conv", "linear"} <= set(stored), stored.keys()
    weights = {}
    for consumer, original in (("conv", W_CONV), ("linear", W_LIN)):
        op_type, values = stored[consumer]
        assert op_type == expected_op
        dense = _decompress(op_type, values, opset)
        assert dense.shape == original.shape
        weight_check(dense, original, values)
        weights[consumer] = dense.astype(np.float32)
    out = _output(mlmodel)
    assert_close(out, _forward(weights["conv"], weights["linear"]), rtol=1e-5)
    baseline = _output(uncompressed)  # the emulator on the uncompressed model
    change = np.linalg.norm(out - baseline) / np.linalg.norm(baseline)
    assert change < max_relative_change, change


def _opset(target: Any) -> int:
    return 16 if target == IOS16 else 18


def test_uncompressed_model_matches_numpy(base_model: tuple[Any, Any]) -> None:
    model, _ = base_model
    assert_close(_output(model), _forward(W_CONV, W_LIN), rtol=1e-5)


def _within_half_a_step(dense: np.ndarray, original: np.ndarray, scale: np.ndarray) -> None:
    error = np.abs(dense - original)
    assert np.all(error <= 0.5 * scale * (1 + 1e-5)), (error / scale).max()


@pytest.mark.parametrize(
    ("mode", "dtype"),
    [("linear_symmetric", "int8"), ("linear", "uint8")],
    ids=["sym-int8", "uint8"],
)
def test_linear_quantize_weights_per_channel(
    base_model: tuple[Any, Any], mode: str, dtype: str
) -> None:
    model, target = base_model
    config = ct.optimize.coreml.OptimizationConfig(
        global_config=ct.optimize.coreml.OpLinearQuantizerConfig(
            mode=mode, dtype=dtype, granularity="per_channel", weight_threshold=0
        )
    )
    compressed = ct.optimize.coreml.linear_quantize_weights(model, config)
    op = "constexpr_affine_dequantize" if target == IOS16 else "constexpr_blockwise_shift_scale"

    def per_channel_step(dense: np.ndarray, original: np.ndarray, v: dict) -> None:
        scale = np.asarray(v["scale"], np.float64).reshape(-1, *([1] * (original.ndim - 1)))
        assert scale.shape[0] == original.shape[0]  # one scale per output channel
        _within_half_a_step(dense, original, scale)

    _check_compressed(compressed, model, _opset(target), op, per_channel_step, 0.02)


@pytest.mark.parametrize(
    ("dtype", "mode", "block_size", "bound"),
    [
        ("int4", "linear", 4, 0.1),
        ("int8", "linear_symmetric", 8, 0.02),
        ("uint4", "linear", 2, 0.1),
    ],
    ids=["int4-block4", "int8-block8", "uint4-block2"],
)
def test_linear_quantize_weights_per_block_ios18(
    dtype: str, mode: str, block_size: int, bound: float
) -> None:
    model = convert(build(_model_body, [X], IOS18), IOS18)
    config = ct.optimize.coreml.OptimizationConfig(
        global_config=ct.optimize.coreml.OpLinearQuantizerConfig(
            mode=mode,
            dtype=dtype,
            granularity="per_block",
            block_size=block_size,
            weight_threshold=0,
        )
    )
    compressed = ct.optimize.coreml.linear_quantize_weights(model, config)

    def per_block_step(dense: np.ndarray, original: np.ndarray, v: dict) -> None:
        scale = np.asarray(v["scale"], np.float64)
        # blocks of `block_size` input channels (axis 1), one per output channel
        assert scale.shape[:2] == (original.shape[0], original.shape[1] // block_size)
        _within_half_a_step(dense, original, _block_expand(scale, original.shape))

    _check_compressed(
        compressed, model, 18, "constexpr_blockwise_shift_scale", per_block_step, bound
    )


def _palettized_check(nbits: int) -> Callable[[np.ndarray, np.ndarray, dict], None]:
    def check(dense: np.ndarray, original: np.ndarray, v: dict) -> None:
        lut = np.asarray(v["lut"])
        entries = lut.size if lut.ndim == 1 else lut.shape[-2]  # iOS16 flat, iOS18 [..., n, 1]
        assert entries == 2**nbits
        assert set(np.unique(dense)) <= set(np.unique(lut))  # every weight is a LUT entry

    return check


@pytest.mark.parametrize(("nbits", "bound"), [(2, 0.5), (4, 0.2), (6, 0.03)])
def test_palettize_weights_kmeans(base_model: tuple[Any, Any], nbits: int, bound: float) -> None:
    model, target = base_model
    config = ct.optimize.coreml.OptimizationConfig(
        global_config=ct.optimize.coreml.OpPalettizerConfig(
            mode="kmeans", nbits=nbits, weight_threshold=0
        )
    )
    compressed = ct.optimize.coreml.palettize_weights(model, config)
    _check_compressed(
        compressed, model, _opset(target), "constexpr_lut_to_dense", _palettized_check(nbits), bound
    )


@pytest.mark.parametrize(("nbits", "group_size", "bound"), [(2, 4, 0.4), (4, 2, 0.1)])
def test_palettize_weights_per_grouped_channel_ios18(
    nbits: int, group_size: int, bound: float
) -> None:
    model = convert(build(_model_body, [X], IOS18), IOS18)
    config = ct.optimize.coreml.OptimizationConfig(
        global_config=ct.optimize.coreml.OpPalettizerConfig(
            mode="kmeans",
            nbits=nbits,
            granularity="per_grouped_channel",
            group_size=group_size,
            weight_threshold=0,
        )
    )
    compressed = ct.optimize.coreml.palettize_weights(model, config)

    def grouped(dense: np.ndarray, original: np.ndarray, v: dict) -> None:
        lut = np.asarray(v["lut"])
        groups = original.shape[0] // group_size
        assert lut.shape == (groups, *([1] * (original.ndim - 1)), 2**nbits, 1)
        for g in range(groups):  # each group of output channels uses its own table
            rows = dense[g * group_size : (g + 1) * group_size]
            assert set(np.unique(rows)) <= set(lut[g].ravel())

    _check_compressed(compressed, model, 18, "constexpr_lut_to_dense", grouped, bound)


def test_palettize_weights_vector_ios18() -> None:
    """Vector palettization (cluster_dim 2): LUT entries are vectors laid along an axis."""
    model = convert(build(_model_body, [X], IOS18), IOS18)
    config = ct.optimize.coreml.OptimizationConfig(
        global_config=ct.optimize.coreml.OpPalettizerConfig(
            mode="kmeans", nbits=4, cluster_dim=2, weight_threshold=0
        )
    )
    compressed = ct.optimize.coreml.palettize_weights(model, config)

    def vectors(dense: np.ndarray, original: np.ndarray, v: dict) -> None:
        assert np.asarray(v["lut"]).shape[-1] == 2

    _check_compressed(compressed, model, 18, "constexpr_lut_to_dense", vectors, 0.3)


def test_prune_weights_magnitude(base_model: tuple[Any, Any]) -> None:
    model, target = base_model
    config = ct.optimize.coreml.OptimizationConfig(
        global_config=ct.optimize.coreml.OpMagnitudePrunerConfig(
            target_sparsity=0.5, weight_threshold=0
        )
    )
    compressed = ct.optimize.coreml.prune_weights(model, config)

    def half_smallest_zeroed(dense: np.ndarray, original: np.ndarray, v: dict) -> None:
        kept = dense != 0
        assert kept.sum() == original.size - original.size // 2
        np.testing.assert_array_equal(dense[kept], original[kept])  # kept weights are exact
        assert np.abs(original[~kept]).max() <= np.abs(original[kept]).min()

    _check_compressed(
        compressed, model, _opset(target), "constexpr_sparse_to_dense", half_smallest_zeroed, 0.4
    )


def _joint_reference_weights(mlmodel: Any) -> dict[str, np.ndarray]:
    """Consumer op -> dense weight, decompressed by coremltools' own implementation of the
    joint-compression op (``materialized_val_inference``) and scattered by the mask."""
    from coremltools.converters.mil.frontend.milproto.load import load as milproto_load

    spec = mlmodel.get_spec()
    program = milproto_load(spec, spec.specificationVersion, mlmodel.weights_dir)
    weights = {}
    for op in program.functions["main"].operations:
        if op.op_type in ("constexpr_lut_to_sparse", "constexpr_sparse_blockwise_shift_scale"):
            mask, values = op.materialized_val_inference()
            dense = np.zeros(mask.shape, np.float64)
            dense[mask.astype(bool)] = values  # row-major order of the set bits
            (to_dense,) = {child for out in op.outputs for child in out.child_ops}
            assert to_dense.op_type == "constexpr_sparse_to_dense"
            weights[to_dense.outputs[0].child_ops[0].op_type] = dense
    return weights


@pytest.mark.parametrize("second", ["palettize", "linear_quantize"])
def test_joint_compression_pruned_then_compressed_ios18(second: str) -> None:
    """Pruning followed by palettization or int8 quantization with ``joint_compression``:
    iOS18's ``constexpr_lut_to_sparse`` / ``constexpr_sparse_blockwise_shift_scale`` feeding
    ``constexpr_sparse_to_dense``."""
    model = convert(build(_model_body, [X], IOS18), IOS18)
    opt = ct.optimize.coreml
    pruned = opt.prune_weights(
        model,
        opt.OptimizationConfig(
            global_config=opt.OpMagnitudePrunerConfig(target_sparsity=0.5, weight_threshold=0)
        ),
    )
    if second == "palettize":
        config = opt.OpPalettizerConfig(mode="kmeans", nbits=4, weight_threshold=0)
        joint = opt.palettize_weights(
            pruned, opt.OptimizationConfig(global_config=config), joint_compression=True
        )
        op_type = "constexpr_lut_to_sparse"
    else:
        config = opt.OpLinearQuantizerConfig(
            mode="linear_symmetric", dtype="int8", granularity="per_channel", weight_threshold=0
        )
        joint = opt.linear_quantize_weights(
            pruned, opt.OptimizationConfig(global_config=config), joint_compression=True
        )
        op_type = "constexpr_sparse_blockwise_shift_scale"
    ops = program_op_types(joint)
    assert ops.count(op_type) == 2 and ops.count("constexpr_sparse_to_dense") == 2, ops
    reference = _joint_reference_weights(joint)
    for consumer, original in (("conv", W_CONV), ("linear", W_LIN)):
        dense = reference[consumer]
        assert dense.shape == original.shape
        assert (dense == 0).sum() >= original.size // 2  # the pruned half stays zero
    out = _output(joint)
    expected = _forward(
        reference["conv"].astype(np.float32), reference["linear"].astype(np.float32)
    )
    assert_close(out, expected, rtol=1e-5)
    change = np.linalg.norm(out - _output(model)) / np.linalg.norm(_output(model))
    assert 0 < change < 0.5, change


# ----------------------------------------------------------------------------------------
# CoreMLEmulator.with_float_ops: one layer of an int8 program computed in float, as the
# per-layer contributions of `check --layers` and mixed precision measure it.


def test_with_float_ops_reads_the_layers_output_unquantized_with_its_float_weights() -> None:
    x = randn(2, 4, seed=1)
    weight = randn(3, 4, seed=2)
    coarse = np.round(weight * 2.0) / 2.0  # the "int8" weights the program holds
    bias = randn(3, seed=3)

    def body(x):
        q = mb.quantize(input=x, scale=np.float32(0.25), output_dtype="int8")
        dq = mb.dequantize(input=q, scale=np.float32(0.25))
        fc = mb.linear(x=dq, weight=coarse, bias=bias, name="fc")
        q2 = mb.quantize(input=fc, scale=np.float32(0.5), output_dtype="int8")
        return mb.relu(x=mb.dequantize(input=q2, scale=np.float32(0.5)), name="out")

    emulator = CoreMLEmulator(convert(build(body, [x]), pass_pipeline=ct.PassPipeline.EMPTY))
    (name,) = emulator.input_names
    fc = next(n for n in emulator.op_outputs if n.startswith("fc"))
    as_built = emulator.predict({name: x})["out"]
    floated = emulator.with_float_ops({fc: {"weight": weight}})
    assert set(emulator.float_constants()[fc]) == {"weight", "bias"}
    as_read = np.clip(np.round(x / 0.25), -128, 127) * 0.25  # its input stays quantized
    expected = np.maximum(as_read @ weight.T + bias, 0.0)  # its output is read unquantized
    np.testing.assert_allclose(floated.predict({name: x})["out"], expected, rtol=1e-5, atol=1e-6)
    assert np.abs(as_built - expected).max() > 0.05  # the program as built is not that
    np.testing.assert_array_equal(emulator.predict({name: x})["out"], as_built)  # a copy


# ----------------------------------------------------------------------------------------
# The coreml backend's activation ranges (w8a8): every calibration sample's, not the last's.


@pytest.mark.parametrize(("mode", "dtype"), [("linear_symmetric", None), ("linear", "int8")])
def test_w8a8_activation_ranges_span_every_calibration_sample(mode: str, dtype: Any) -> None:
    """coremltools 9.0 keeps only the last sample's range; the backend widens it over all:
    the input's quantize step is the widest sample's, though the last sample is small."""
    from coremltools.converters.mil.frontend.milproto.load import load

    from edgepack.backends.coreml import _quantize_activations

    x = randn(1, 8, seed=4)
    weight = randn(4, 8, seed=5)

    def body(x):
        return mb.relu(x=mb.linear(x=x, weight=weight, bias=np.zeros(4, np.float32)))

    with mock.patch("gc.collect"):  # an fp16 program, as the backend quantizes
        mlmodel = ct.convert(
            build(body, [x]), convert_to="mlprogram", minimum_deployment_target=IOS17,
            skip_model_load=True,
        )  # fmt: skip
    (name,) = CoreMLEmulator(mlmodel).input_names
    wide, narrow = x * 0 + np.linspace(-4.0, 3.0, 8, dtype=np.float32), x * 0.01
    quantized = _quantize_activations(mlmodel, [{name: wide}, {name: narrow}], mode=mode)
    spec = quantized.get_spec()
    program = load(spec, spec.specificationVersion, quantized.weights_dir)
    (first, *_) = [o for o in program.functions["main"].operations if o.op_type == "quantize"]
    assert first.input.name == f"{name}_to_fp16"  # the input cast to the program precision
    step = float(first.scale.val)
    if mode == "linear_symmetric":
        assert step == pytest.approx(4.0 / 127.5, rel=0.01)  # |-4| over int8's half range
    else:
        assert step == pytest.approx(7.0 / 255, rel=0.01)  # [-4, 3] over 255 steps
        assert first.zero_point is not None
