"""Shape, indexing and data-movement kernels of the Core ML emulator (reshape, transpose,
concat, split, slices, pad, squeeze/expand_dims, tile, gathers, cast, ...) against NumPy,
TensorFlow and onnxruntime references (FP32 programs: results must be exact)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.coreml._mil import IOS15, IOS16, IOS17, mb, randn, rng, run, run1
from tests.unit.coreml._mil import ort_run as ort

X = randn(2, 3, 4, 5, seed=1)


def _exact(actual: np.ndarray, expected: np.ndarray) -> None:
    """Data movement must be bit exact (tolerance 0), shape included."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    np.testing.assert_array_equal(actual, expected)


# reshape: -1 infers; 0 copies an input dimension. iOS15/16 need len(shape) == rank;
# iOS17 matches each 0 with the input dimension counted from the right, 1 when out of range.
RESHAPES = {
    "minus-one": (IOS17, (2, 3, 4, 5), [-1, 20], (6, 20)),
    "minus-one-first": (IOS17, (2, 3, 4, 5), [6, -1, 2], (6, 10, 2)),
    "zero-same-rank-ios15": (IOS15, (2, 3, 4, 5), [0, -1, 0, 1], (2, 15, 4, 1)),
    "zero-same-rank-ios17": (IOS17, (2, 3, 4, 5), [0, 0, -1, 5], (2, 3, 4, 5)),
    "zero-right-aligned-ios17": (IOS17, (2, 3, 4), [-1, 0], (6, 4)),
    "zero-doc-example-ios17": (IOS17, (2, 50), [1, 0, -1, 0], (1, 1, 2, 50)),
}


@pytest.mark.parametrize("case", RESHAPES.values(), ids=RESHAPES.keys())
def test_reshape(case: tuple) -> None:
    target, in_shape, shape, expected_shape = case
    x = randn(*in_shape, seed=2)
    out = run1(lambda x: mb.reshape(x=x, shape=shape), [x], target=target, expect_ops=["reshape"])
    _exact(out, x.reshape(expected_shape))


@pytest.mark.parametrize("perm", [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1], [0, 2, 3, 1]])
def test_transpose(perm: list[int]) -> None:
    out = run1(lambda x: mb.transpose(x=x, perm=perm), [X])
    _exact(out, np.transpose(X, perm))


@pytest.mark.parametrize("axis", [0, 1, -1, -3])
def test_concat(axis: int) -> None:
    shapes = [list(X.shape) for _ in range(3)]
    for i, size in enumerate((1, 3, 2)):
        shapes[i][axis] = size
    arrays = [randn(*shape, seed=3 + i) for i, shape in enumerate(shapes)]
    out = run1(
        lambda a, b, c: mb.concat(values=(a, b, c), axis=axis), arrays, expect_ops=["concat"]
    )
    _exact(out, np.concatenate(arrays, axis=axis))


@pytest.mark.parametrize("axis", [0, 2, -1])
def test_concat_interleave(axis: int) -> None:
    """Interleave: output[i::n] = values[i] along ``axis`` (coremltools' example)."""
    arrays = [randn(2, 3, 4, seed=6 + i) for i in range(3)]
    out = run1(
        lambda a, b, c: mb.concat(values=(a, b, c), axis=axis, interleave=True),
        arrays,
        expect_ops=["concat"],
    )
    expected_shape = list(arrays[0].shape)
    expected_shape[axis] *= 3
    expected = np.empty(expected_shape, np.float32)
    for i, array in enumerate(arrays):
        index = [slice(None)] * 3
        index[axis] = slice(i, None, 3)
        expected[tuple(index)] = array
    _exact(out, expected)


def test_concat_interleave_doc_example() -> None:
    a = np.array([[1, 2], [3, 4], [5, 6]], np.float32)
    b = np.array([[7, 8], [9, 10], [11, 12]], np.float32)
    out = run1(lambda a, b: mb.concat(values=(a, b), axis=0, interleave=True), [a, b])
    _exact(out, np.array([[1, 2], [7, 8], [3, 4], [9, 10], [5, 6], [11, 12]], np.float32))


@pytest.mark.parametrize(
    ("kwargs", "bounds", "axis"),
    [
        ({"num_splits": 3, "axis": 1}, [1, 2], 1),
        ({"num_splits": 5, "axis": -1}, [1, 2, 3, 4], 3),
        ({"split_sizes": [1, 3], "axis": 2}, [1], 2),
        ({"split_sizes": [2, 1, 2], "axis": -1}, [2, 3], 3),
        ({"split_sizes": [2, 1, 2], "num_splits": 3, "axis": 3}, [2, 3], 3),
    ],
    ids=["num-3", "num-negative-axis", "sizes", "sizes-negative-axis", "sizes-and-num"],
)
def test_split(kwargs: dict, bounds: list[int], axis: int) -> None:
    outs = run(lambda x: mb.split(x=x, **kwargs), [X], expect_ops=["split"])
    expected = np.split(X, bounds, axis=axis)
    assert len(outs) == len(expected)
    for out, part in zip(outs, expected, strict=True):
        _exact(out, part)


# slice_by_index: x[begin:end:stride] per axis, NumPy semantics (begin/end_mask -> omitted
# bound, squeeze_mask -> pure index at begin), as coremltools solves the slices
SLICES = {
    "basic": ({"begin": [0, 1, 1, 0], "end": [2, 3, 4, 5]}, np.s_[0:2, 1:3, 1:4, 0:5]),
    "strides": (
        {"begin": [0, 0, 1, 0], "end": [2, 3, 4, 5], "stride": [1, 2, 2, 3]},
        np.s_[0:2, 0:3:2, 1:4:2, 0:5:3],
    ),
    "negative-bounds": (
        {"begin": [-2, -3, 1, -4], "end": [2, -1, -1, 5]},
        np.s_[-2:2, -3:-1, 1:-1, -4:5],
    ),
    "negative-strides": (
        {"begin": [1, 2, 3, 4], "end": [0, 0, 0, 0], "stride": [-1, -1, -2, -3]},
        np.s_[1:0:-1, 2:0:-1, 3:0:-2, 4:0:-3],
    ),
    "negative-strides-masks": (
        {
            "begin": [0, 0, 0, 0],
            "end": [0, 0, 0, 0],
            "stride": [1, -1, -2, -1],
            "begin_mask": [True, True, True, True],
            "end_mask": [True, True, True, True],
        },
        np.s_[:, ::-1, ::-2, ::-1],
    ),
    "masks": (
        {
            "begin": [1, 9, 2, 9],
            "end": [9, 2, 9, 3],
            "begin_mask": [False, True, False, True],
            "end_mask": [True, False, True, False],
        },
        np.s_[1:, :2, 2:, :3],
    ),
    "squeeze": (
        {
            "begin": [1, 0, 2, -1],
            "end": [2, 3, 3, 5],
            "squeeze_mask": [True, False, True, False],
        },
        np.s_[1, 0:3, 2, -1:5],
    ),
    "squeeze-negative": (
        {"begin": [0, -1, 0, 0], "end": [2, 0, 4, 5], "squeeze_mask": [False, True, False, False]},
        np.s_[0:2, -1, 0:4, 0:5],
    ),
}


@pytest.mark.parametrize("case", SLICES.values(), ids=SLICES.keys())
def test_slice_by_index(case: tuple) -> None:
    kwargs, index = case
    out = run1(lambda x: mb.slice_by_index(x=x, **kwargs), [X], expect_ops=["slice_by_index"])
    _exact(out, X[index])


@pytest.mark.parametrize(
    ("begin", "size", "index"),
    [
        ([0, 1, 1, 2], [2, 2, 3, 3], np.s_[0:2, 1:3, 1:4, 2:5]),
        ([1, 0, 2, 1], [-1, 3, -1, 2], np.s_[1:, 0:3, 2:, 1:3]),
        ([0, -2, 0, -3], [1, -1, 2, 2], np.s_[0:1, 1:, 0:2, 2:4]),
    ],
    ids=["sizes", "minus-one", "negative-begin"],
)
def test_slice_by_size(begin: list[int], size: list[int], index: tuple) -> None:
    out = run1(
        lambda x: mb.slice_by_size(x=x, begin=begin, size=size), [X], expect_ops=["slice_by_size"]
    )
    _exact(out, X[index])


# pad: [before, after] pairs for the last N axes; reference: onnxruntime's Pad
# (constant / reflect / edge = MIL replicate)
PADS = {
    "constant-last-two": ("constant", [1, 2, 0, 3], 1.5),
    "constant-all": ("constant", [0, 1, 2, 0, 1, 1, 3, 2], -2.0),
    "constant-last-one": ("constant", [4, 1], 0.0),
    "reflect-last-two": ("reflect", [1, 3, 2, 4], None),
    "reflect-last-one": ("reflect", [0, 2], None),
    "replicate-last-two": ("replicate", [2, 1, 0, 5], None),
    "replicate-last-one-max": ("replicate", [5, 5], None),
}


@pytest.mark.parametrize("case", PADS.values(), ids=PADS.keys())
def test_pad_matches_onnxruntime(case: tuple) -> None:
    mode, pad, value = case
    kwargs = {"pad": pad, "mode": mode}
    if value is not None:
        kwargs["constant_val"] = value
    out = run1(lambda x: mb.pad(x=x, **kwargs), [X], expect_ops=["pad"])
    pairs = np.array(pad).reshape(-1, 2)
    leading = X.ndim - len(pairs)
    onnx_pads = [0] * leading + pairs[:, 0].tolist() + [0] * leading + pairs[:, 1].tolist()
    initializers = {"pads": np.array(onnx_pads, np.int64)}
    order = ["x", "pads"]
    if mode == "constant":
        initializers["value"] = np.array(value, np.float32)
        order.append("value")
    onnx_mode = {"constant": "constant", "reflect": "reflect", "replicate": "edge"}[mode]
    expected = ort("Pad", {"x": X}, {"mode": onnx_mode}, initializers, order)
    _exact(out, expected)


@pytest.mark.parametrize(
    ("axes", "expected_shape"),
    [([1], (2, 4, 1)), ([-1], (2, 1, 4)), ([1, 3], (2, 4)), (None, (2, 4)), ([0, 1], (2, 4, 1))],
    ids=["one", "negative", "two", "all", "non-single-ignored"],
)
def test_squeeze(axes: list[int] | None, expected_shape: tuple[int, ...]) -> None:
    """Squeezing a non-single dimension is ignored (PyTorch behaviour, coremltools' doc)."""
    x = randn(2, 1, 4, 1, seed=9)
    kwargs = {} if axes is None else {"axes": axes}
    out = run1(lambda x: mb.squeeze(x=x, **kwargs), [x], expect_ops=["squeeze"])
    _exact(out, x.reshape(expected_shape))


@pytest.mark.parametrize(
    ("axes", "expected_shape"),
    [
        ([0], (1, 2, 3)),
        ([-1], (2, 3, 1)),
        ([1, -1], (2, 1, 3, 1)),
        ([0, 2], (1, 2, 1, 3)),
        ([-4, -2], (1, 2, 1, 3)),
    ],
    ids=["front", "back", "mixed", "two", "two-negative"],
)
def test_expand_dims(axes: list[int], expected_shape: tuple[int, ...]) -> None:
    x = randn(2, 3, seed=10)
    out = run1(lambda x: mb.expand_dims(x=x, axes=axes), [x], expect_ops=["expand_dims"])
    _exact(out, x.reshape(expected_shape))


@pytest.mark.parametrize("reps", [[1, 1, 1], [2, 1, 3], [1, 4, 1]])
def test_tile(reps: list[int]) -> None:
    x = randn(2, 3, 2, seed=11)
    out = run1(lambda x: mb.tile(x=x, reps=reps), [x], expect_ops=["tile"])
    _exact(out, np.tile(x, reps))


# gather: tf.gather semantics (batch_dims as TensorFlow). Negative indices are valid in
# iOS15/iOS16 and out of bounds (undefined) from iOS17, so they are tested on iOS16.
GATHERS = {
    "axis0": (IOS17, [[1, 0], [1, 1]], 0, 0),
    "axis2": (IOS17, [3, 0, 1], 2, 0),
    "negative-axis": (IOS17, [[4], [0]], -1, 0),
    "negative-indices-ios16": (IOS16, [-1, 0, -3], 1, 0),
    "negative-indices-ios15": (IOS15, [[-2, 1]], -2, 0),
    "batch-dims-1": (IOS17, [[0, 2], [1, 1]], 2, 1),
    "batch-dims-2": (IOS16, [[[3], [0], [1]], [[2], [2], [4]]], 3, 2),
}


@pytest.mark.parametrize("case", GATHERS.values(), ids=GATHERS.keys())
def test_gather(case: tuple) -> None:
    import tensorflow as tf

    target, indices, axis, batch_dims = case
    idx = np.array(indices, np.int32)
    kwargs = {"axis": axis} if batch_dims == 0 else {"axis": axis, "batch_dims": batch_dims}
    out = run1(
        lambda x: mb.gather(x=x, indices=idx, **kwargs), [X], target=target, expect_ops=["gather"]
    )
    positive = np.where(idx < 0, idx + X.shape[axis], idx)  # TF rejects negatives on CPU
    expected = tf.gather(X, positive, axis=axis, batch_dims=batch_dims).numpy()
    _exact(out, expected)


def test_gather_runtime_indices() -> None:
    idx = np.array([[4, 0, 2]], np.int32)
    out = run1(lambda x, i: mb.gather(x=x, indices=i, axis=3), [X, idx], expect_ops=["gather"])
    _exact(out, np.take(X, idx, axis=3))


GATHER_ND = {
    "full-index": (IOS17, [[0, 1, 2, 3], [1, 2, 3, 4]], 0),
    "partial-index": (IOS17, [[[1, 2], [0, 0]], [[1, 0], [0, 2]]], 0),
    "single-axis": (IOS17, [[1], [0], [1]], 0),
    "batch-dims-1": (IOS16, [[[2, 1]], [[0, 3]]], 1),
    "batch-dims-2": (IOS17, [[[3], [1], [0]], [[2], [2], [1]]], 2),
}


@pytest.mark.parametrize("case", GATHER_ND.values(), ids=GATHER_ND.keys())
def test_gather_nd(case: tuple) -> None:
    import tensorflow as tf

    target, indices, batch_dims = case
    idx = np.array(indices, np.int32)
    kwargs = {"batch_dims": batch_dims} if batch_dims else {}
    out = run1(
        lambda x: mb.gather_nd(x=x, indices=idx, **kwargs),
        [X],
        target=target,
        expect_ops=["gather_nd"],
    )
    _exact(out, tf.gather_nd(X, idx, batch_dims=batch_dims).numpy())


@pytest.mark.parametrize(("axis", "target"), [(1, IOS17), (-1, IOS17), (0, IOS16)])
def test_gather_along_axis(axis: int, target: object) -> None:
    shape = list(X.shape)
    shape[axis] = 6
    idx = rng(12).integers(0, X.shape[axis], size=shape).astype(np.int32)
    if target is IOS16:  # negative indices count from the end (iOS15/iOS16 only)
        idx = idx - X.shape[axis] * (rng(13).random(shape) < 0.5)
    out = run1(
        lambda x: mb.gather_along_axis(x=x, indices=idx, axis=axis),
        [X],
        target=target,
        expect_ops=["gather_along_axis"],
    )
    # out[i, j, k, l] = x[..., idx[i, j, k, l] on `axis`, ...]
    positive = np.where(idx < 0, idx + X.shape[axis], idx)
    grids = list(np.indices(idx.shape))
    grids[axis] = positive
    _exact(out, X[tuple(grids)])


def test_cast_float_to_int_truncates_toward_zero() -> None:
    x = np.array([-2.7, -2.5, -0.5, 0.0, 0.5, 1.5, 2.7, 1e6], np.float32)
    out = run1(lambda x: mb.cast(x=x, dtype="int32"), [x], expect_ops=["cast"])
    assert out.dtype == np.int32
    assert out.tolist() == [-2, -2, 0, 0, 0, 1, 2, 1000000]


def test_cast_int_to_float_and_bool() -> None:
    x = np.array([-3, 0, 1, 7], np.int32)
    outs = run(
        lambda x: (
            mb.cast(x=x, dtype="fp32"),
            mb.cast(x=mb.cast(x=x, dtype="bool"), dtype="fp32"),
        ),
        [x],
        expect_ops=["cast"],
    )
    assert outs[0].dtype == np.float32
    assert outs[0].tolist() == [-3.0, 0.0, 1.0, 7.0]
    assert outs[1].tolist() == [1.0, 0.0, 1.0, 1.0]


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "uint16"])
def test_cast_to_small_integers_ios17(dtype: str) -> None:
    x = np.array([0.0, 1.9, 7.2, 100.6, 126.0], np.float32)
    out = run1(
        lambda x: mb.cast(x=mb.cast(x=x, dtype=dtype), dtype="fp32"), [x], expect_ops=["cast"]
    )
    assert out.tolist() == [0.0, 1.0, 7.0, 100.0, 126.0]


@pytest.mark.parametrize("block", [2, 3])
def test_depth_to_space_matches_tensorflow(block: int) -> None:
    import tensorflow as tf

    x = randn(2, 2 * block * block, 3, 2, seed=14)
    out = run1(
        lambda x: mb.depth_to_space(x=x, block_size=block), [x], expect_ops=["depth_to_space"]
    )
    # coremltools' TF frontend: DepthToSpace(NHWC) = transpose + depth_to_space(NCHW)
    expected = tf.nn.depth_to_space(x.transpose(0, 2, 3, 1), block).numpy().transpose(0, 3, 1, 2)
    _exact(out, expected)


@pytest.mark.parametrize("block", [2, 3])
def test_space_to_depth_matches_tensorflow(block: int) -> None:
    import tensorflow as tf

    x = randn(2, 3, 2 * block, 3 * block, seed=15)
    out = run1(
        lambda x: mb.space_to_depth(x=x, block_size=block), [x], expect_ops=["space_to_depth"]
    )
    expected = tf.nn.space_to_depth(x.transpose(0, 2, 3, 1), block).numpy().transpose(0, 3, 1, 2)
    _exact(out, expected)


def test_pixel_shuffle_is_pytorch_pixel_shuffle() -> None:
    r = 2
    x = randn(1, 3 * r * r, 3, 4, seed=16)
    out = run1(lambda x: mb.pixel_shuffle(x=x, upscale_factor=r), [x], expect_ops=["pixel_shuffle"])
    # PyTorch: out[n, c, h * r + i, w * r + j] = x[n, c * r * r + i * r + j, h, w]
    n, c, h, w = 1, 3, 3, 4
    expected = np.empty((n, c, h * r, w * r), np.float32)
    for ch in range(c):
        for i in range(r):
            for j in range(r):
                expected[:, ch, i::r, j::r] = x[:, ch * r * r + i * r + j]
    _exact(out, expected)


@pytest.mark.parametrize(("lower", "upper"), [(-1, -1), (0, -1), (-1, 0), (1, 2), (0, 0)])
def test_band_part_matches_tensorflow(lower: int, upper: int) -> None:
    import tensorflow as tf

    x = randn(2, 4, 5, seed=17)
    out = run1(lambda x: mb.band_part(x=x, lower=lower, upper=upper), [x], expect_ops=["band_part"])
    _exact(out, tf.linalg.band_part(x, lower, upper).numpy())


@pytest.mark.parametrize("axis", [0, 1, 3, -1, -2])
def test_flatten2d(axis: int) -> None:
    out = run1(lambda x: mb.flatten2d(x=x, axis=axis), [X], expect_ops=["flatten2d"])
    split = axis % X.ndim
    _exact(out, X.reshape(int(np.prod(X.shape[:split])), -1))


@pytest.mark.parametrize("axis", [0, 2, -1])
def test_stack(axis: int) -> None:
    arrays = [randn(3, 4, seed=18 + i) for i in range(3)]
    out = run1(lambda a, b, c: mb.stack(values=(a, b, c), axis=axis), arrays, expect_ops=["stack"])
    _exact(out, np.stack(arrays, axis=axis))


@pytest.mark.parametrize("axes", [[0], [-1], [1, 2], None])
def test_reverse(axes: list[int] | None) -> None:
    kwargs = {} if axes is None else {"axes": axes}
    out = run1(lambda x: mb.reverse(x=x, **kwargs), [X], expect_ops=["reverse"])
    _exact(out, np.flip(X, axis=None if axes is None else tuple(axes)))


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_one_hot_matches_tensorflow(axis: int) -> None:
    import tensorflow as tf

    indices = np.array([[0, 3, 1], [2, 2, 4]], np.int32)
    out = run1(
        lambda i: mb.one_hot(
            indices=i, one_hot_vector_size=5, axis=axis, on_value=2.5, off_value=-1.0
        ),
        [indices],
        expect_ops=["one_hot"],
    )
    expected = tf.one_hot(indices, 5, on_value=2.5, off_value=-1.0, axis=axis).numpy()
    _exact(out, expected)
