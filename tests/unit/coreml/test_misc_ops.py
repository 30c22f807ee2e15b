"""select, cumsum, topk and argsort kernels of the Core ML emulator against TensorFlow and
NumPy references (FP32 programs)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.coreml._mil import IOS15, IOS16, IOS17, assert_close, mb, randn, rng, run, run1


@pytest.mark.parametrize(
    ("cond_shape", "a_shape", "b_shape"),
    [((2, 3, 4), (2, 3, 4), (2, 3, 4)), ((3, 1), (2, 1, 4), (4,)), ((2, 1, 1), (1, 3, 1), (1, 4))],
    ids=["same-shape", "broadcast", "broadcast-all"],
)
def test_select(cond_shape: tuple, a_shape: tuple, b_shape: tuple) -> None:
    import tensorflow as tf

    c, a, b = randn(*cond_shape, seed=1), randn(*a_shape, seed=2), randn(*b_shape, seed=3)

    def body(c, a, b):
        return mb.select(cond=mb.greater(x=c, y=np.float32(0.0)), a=a, b=b)

    out = run1(body, [c, a, b], expect_ops=["select"])
    shape = np.broadcast_shapes(cond_shape, a_shape, b_shape)
    expected = tf.where(
        np.broadcast_to(c > 0, shape), np.broadcast_to(a, shape), np.broadcast_to(b, shape)
    ).numpy()
    np.testing.assert_array_equal(out, expected)  # exact: a selection


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("exclusive", [False, True], ids=["inclusive", "exclusive"])
@pytest.mark.parametrize("axis", [0, 2, -1])
def test_cumsum_matches_tensorflow(axis: int, exclusive: bool, reverse: bool) -> None:
    import tensorflow as tf

    x = randn(3, 4, 5, seed=4)
    out = run1(
        lambda x: mb.cumsum(x=x, axis=axis, exclusive=exclusive, reverse=reverse),
        [x],
        expect_ops=["cumsum"],
    )
    expected = tf.math.cumsum(
        x.astype(np.float64), axis=axis, exclusive=exclusive, reverse=reverse
    ).numpy()
    assert_close(out, expected, rtol=1e-5)


def test_cumsum_int32_exclusive_reverse() -> None:
    x = np.arange(1, 13, dtype=np.int32).reshape(3, 4)
    out = run1(lambda x: mb.cumsum(x=x, axis=1, exclusive=True, reverse=True), [x])
    expected = [[9, 7, 4, 0], [21, 15, 8, 0], [33, 23, 12, 0]]
    assert out.dtype == np.int32
    assert out.tolist() == expected


def _distinct(*shape: int, seed: int) -> np.ndarray:
    """Distinct values (no ties: MIL leaves the order of equal values open)."""
    values = rng(seed).permutation(int(np.prod(shape))).astype(np.float32) * 0.5 - 7
    return values.reshape(shape)


@pytest.mark.parametrize("target", [IOS15, IOS16, IOS17], ids=["iOS15", "iOS16", "iOS17"])
@pytest.mark.parametrize("ascending", [False, True], ids=["top", "bottom"])
@pytest.mark.parametrize(("k", "axis"), [(1, -1), (3, -1), (2, 1), (6, 2)])
def test_topk(k: int, axis: int, ascending: bool, target: object) -> None:
    import tensorflow as tf

    x = _distinct(2, 4, 6, seed=5)
    values, indices = run(
        lambda x: mb.topk(x=x, k=k, axis=axis, ascending=ascending),
        [x],
        target=target,
        expect_ops=["topk"],
    )
    moved = np.moveaxis(x, axis, -1)
    top = tf.math.top_k(-moved if ascending else moved, k=k)
    expected_values = np.moveaxis(
        -top.values.numpy() if ascending else top.values.numpy(), -1, axis
    )
    expected_indices = np.moveaxis(top.indices.numpy(), -1, axis)
    np.testing.assert_array_equal(values, expected_values)  # exact: a selection
    assert indices.dtype == np.int32
    np.testing.assert_array_equal(indices, expected_indices)


def test_topk_values_only_ios16() -> None:
    x = _distinct(3, 5, seed=6)
    out = run1(lambda x: mb.topk(x=x, k=2, return_indices=False), [x], target=IOS16)
    np.testing.assert_array_equal(out, -np.sort(-x, axis=-1)[:, :2])


# topk k=-1 (iOS17 "select all elements"): coremltools 9.0 infers a -1 output dimension and
# fails to serialize the program ("Value out of range: -1"), so it cannot be tested.


def test_topk_uint16_indices_ios17() -> None:
    x = _distinct(2, 7, seed=8)

    def body(x):
        values, indices = mb.topk(x=x, k=3, output_indices_dtype="uint16")
        return values, mb.cast(x=indices, dtype="int32")

    values, indices = run(body, [x], target=IOS17, expect_ops=["topk"])
    order = np.argsort(-x, axis=-1)[:, :3]
    np.testing.assert_array_equal(indices, order)
    np.testing.assert_array_equal(values, np.take_along_axis(x, order, axis=-1))


@pytest.mark.parametrize("ascending", [False, True])
@pytest.mark.parametrize("axis", [-1, 0])
def test_argsort(axis: int, ascending: bool) -> None:
    x = _distinct(4, 5, seed=9)
    out = run1(
        lambda x: mb.argsort(x=x, axis=axis, ascending=ascending), [x], expect_ops=["argsort"]
    )
    expected = np.argsort(x if ascending else -x, axis=axis)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, expected)
