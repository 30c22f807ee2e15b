"""Kernels the Core ML emulator gained from Apple's own op tests: the scatter family in every
mode (against TensorFlow's tensor_scatter_nd_* and a loop applying updates in order), crop,
reverse_sequence, space_to_batch / batch_to_space and sliding_windows (against TensorFlow and
NumPy), flatten2d's axis convention, l2_norm and local_response_norm (against PyTorch).
FP32 programs: data movement is exact, arithmetic within float32 rounding."""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.coreml._mil import IOS15, IOS17, mb, randn, run1

MODES = ("update", "add", "sub", "mul", "div", "max", "min")
COMBINE = {
    "update": lambda old, new: new,
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": np.divide,
    "max": np.maximum,
    "min": np.minimum,
}


def _in_order(data: np.ndarray, positions: list[tuple], updates: list, mode: str) -> np.ndarray:
    """The reference: updates applied one at a time, in index order."""
    out = data.copy()
    for where, value in zip(positions, updates, strict=True):
        out[where] = COMBINE[mode](out[where], value)
    return out


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_scatter_with_a_repeated_index(mode: str, axis: int) -> None:
    data = randn(3, 4, 5, seed=1) + 3.0  # away from 0 for div
    size = data.shape[axis]
    indices = np.array([size - 1, 0, size - 1], dtype=np.int32)  # the last index twice
    shape = list(data.shape)
    shape[axis] = len(indices)
    updates = randn(*shape, seed=2) + 3.0
    out = run1(
        lambda d, u: mb.scatter(data=d, indices=indices, updates=u, axis=axis, mode=mode),
        [data, updates],
        expect_ops=["scatter"],
    )
    moved = np.moveaxis(updates, axis, 0)
    positions = [(slice(None),) * (axis % 3) + (int(i),) for i in indices]
    expected = _in_order(data, positions, list(moved), mode)
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_scatter_ios15_reads_negative_indices_from_the_end() -> None:
    data = np.zeros((4, 2), np.float32)
    updates = np.ones((2, 2), np.float32)
    indices = np.array([-1, 0], dtype=np.int32)
    out = run1(
        lambda d, u: mb.scatter(data=d, indices=indices, updates=u, mode="add"),
        [data, updates],
        target=IOS15,
    )
    np.testing.assert_array_equal(out, [[1, 1], [0, 0], [0, 0], [1, 1]])


@pytest.mark.parametrize("mode", ["update", "add", "max"])
def test_scatter_along_axis_against_tensorflow(mode: str) -> None:
    import tensorflow as tf

    data = randn(3, 4, seed=3)
    indices = np.array([[0, 2, 2, 1], [1, 1, 0, 0]], dtype=np.int32)  # no repeats per column
    updates = randn(2, 4, seed=4)
    out = run1(
        lambda d, u: mb.scatter_along_axis(data=d, indices=indices, updates=u, axis=0, mode=mode),
        [data, updates],
        expect_ops=["scatter_along_axis"],
    )
    coords = np.stack([indices, np.broadcast_to(np.arange(4), indices.shape)], -1)
    scatter = {
        "update": tf.tensor_scatter_nd_update,
        "add": tf.tensor_scatter_nd_add,
        "max": tf.tensor_scatter_nd_max,
    }[mode]
    np.testing.assert_allclose(out, scatter(data, coords, updates).numpy(), rtol=1e-6)


@pytest.mark.parametrize("mode", ["add", "sub", "min"])
def test_scatter_nd_slices_against_tensorflow(mode: str) -> None:
    import tensorflow as tf

    data = randn(4, 3, 2, seed=5)
    indices = np.array([[1, 2], [3, 0], [1, 2]], dtype=np.int32)  # (1, 2) twice: accumulates
    updates = randn(3, 2, seed=6)
    out = run1(
        lambda d, u: mb.scatter_nd(data=d, indices=indices, updates=u, mode=mode),
        [data, updates],
        expect_ops=["scatter_nd"],
    )
    scatter = {
        "add": tf.tensor_scatter_nd_add,
        "sub": tf.tensor_scatter_nd_sub,
        "min": tf.tensor_scatter_nd_min,
    }[mode]
    np.testing.assert_allclose(out, scatter(data, indices, updates).numpy(), rtol=1e-6)


def test_ios17_unvalidated_out_of_bounds_updates_are_dropped() -> None:
    """Undefined in Core ML; the emulator keeps ``data`` there, so such a program cannot
    look right by accident."""
    data = np.zeros((2, 3), np.float32)
    updates = np.ones((2, 3), np.float32)
    indices = np.array([1, 0], dtype=np.int32)

    def body(d: object, u: object, i: object) -> object:
        return mb.scatter(data=d, indices=i, updates=u, mode="add", validate_indices=False)

    fine = run1(body, [data, updates, indices], target=IOS17)
    np.testing.assert_array_equal(fine, np.ones((2, 3)))
    dropped = run1(body, [data, updates, np.array([5, 0], np.int32)], target=IOS17)
    np.testing.assert_array_equal(dropped, [[1, 1, 1], [0, 0, 0]])
    with pytest.raises(RuntimeError, match="out of bounds"):
        run1(
            lambda d, u, i: mb.scatter(data=d, indices=i, updates=u, validate_indices=True),
            [data, updates, np.array([-1, 0], np.int32)],
            target=IOS17,
        )


def test_crop() -> None:
    x = randn(2, 3, 7, 9, seed=7)
    out = run1(lambda x: mb.crop(x=x, crop_height=[1, 2], crop_width=[3, 0]), [x])
    np.testing.assert_array_equal(out, x[..., 1:5, 3:9])


@pytest.mark.parametrize(("seq_axis", "batch_axis"), [(1, 0), (0, 1), (2, 0)])
def test_reverse_sequence_against_tensorflow(seq_axis: int, batch_axis: int) -> None:
    import tensorflow as tf

    x = randn(3, 4, 5, seed=8)
    lengths = np.array([1, 3, 0, 4, 2][: x.shape[batch_axis]], dtype=np.int32)
    lengths = np.minimum(lengths, x.shape[seq_axis]).astype(np.int32)
    out = run1(
        lambda x: mb.reverse_sequence(
            x=x, lengths=lengths, seq_axis=seq_axis, batch_axis=batch_axis
        ),
        [x],
        expect_ops=["reverse_sequence"],
    )
    expected = tf.reverse_sequence(x, lengths, seq_axis=seq_axis, batch_axis=batch_axis)
    np.testing.assert_array_equal(out, expected.numpy())


def test_space_to_batch_and_back_against_tensorflow() -> None:
    import tensorflow as tf

    x = randn(2, 3, 5, 6, seed=9)
    block, paddings = [2, 3], [[1, 0], [0, 0]]
    out = run1(
        lambda x: mb.space_to_batch(x=x, block_shape=block, paddings=paddings),
        [x],
        expect_ops=["space_to_batch"],
    )
    nhwc = tf.space_to_batch_nd(np.transpose(x, (0, 2, 3, 1)), block, paddings).numpy()
    np.testing.assert_array_equal(out, np.transpose(nhwc, (0, 3, 1, 2)))
    back = run1(
        lambda y: mb.batch_to_space(x=y, block_shape=block, crops=paddings),
        [out],
        expect_ops=["batch_to_space"],
    )
    np.testing.assert_array_equal(back, x)


@pytest.mark.parametrize(("axis", "size", "stride"), [(1, 3, 1), (1, 2, 2), (-1, 4, 3)])
def test_sliding_windows(axis: int, size: int, stride: int) -> None:
    x = randn(2, 7, 9, seed=10)
    out = run1(
        lambda x: mb.sliding_windows(x=x, axis=axis, size=size, stride=stride),
        [x],
        expect_ops=["sliding_windows"],
    )
    a = axis % 3
    starts = range(0, x.shape[a] - size + 1, stride)
    windows = [np.take(x, range(s, s + size), axis=a) for s in starts]
    np.testing.assert_array_equal(out, np.stack(windows, axis=a))


@pytest.mark.parametrize(
    ("shape", "axis", "expected"),
    [((3,), -1, (1, 3)), ((3,), 1, (3, 1)), ((4, 3), -1, (4, 3)), ((5, 5, 2), 1, (5, 10))],
)
def test_flatten2d_takes_the_axis_as_python_slicing_does(
    shape: tuple, axis: int, expected: tuple
) -> None:
    x = randn(*shape, seed=11)
    out = run1(lambda x: mb.flatten2d(x=x, axis=axis), [x], expect_ops=["flatten2d"])
    assert out.shape == expected
    np.testing.assert_array_equal(out.ravel(), x.ravel())


def test_l2_norm_over_the_last_three_axes() -> None:
    x = randn(2, 3, 4, 5, 6, seed=12)
    out = run1(lambda x: mb.l2_norm(x=x, epsilon=1e-6), [x], expect_ops=["l2_norm"])
    flat = x.reshape(6, -1).astype(np.float64)
    expected = flat / np.sqrt((flat**2).sum(axis=1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(out, expected.reshape(x.shape), rtol=1e-5)


@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_local_response_norm_against_pytorch(size: int) -> None:
    torch = pytest.importorskip("torch")
    x = randn(2, 6, 4, 5, seed=13, scale=3.0)
    out = run1(
        lambda x: mb.local_response_norm(x=x, size=size, alpha=0.3, beta=0.6, k=1.5),
        [x],
        expect_ops=["local_response_norm"],
    )
    lrn = torch.nn.LocalResponseNorm(size=size, alpha=0.3, beta=0.6, k=1.5)
    np.testing.assert_allclose(out, lrn(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-6)


def test_local_response_norm_on_apples_smoke_input_sums_neighbouring_channels() -> None:
    """coremltools' LRN smoke test expects each element divided by a term of its own square
    only; PyTorch's LocalResponseNorm (the reference of the same op's stress tests, rank 3
    included) and the emulator sum the window of channels. The conformance driver lists that
    smoke test as ``apple literal``."""
    torch = pytest.importorskip("torch")
    x = np.array([[[1.0, -7.0], [5.0, -6.0], [-3.0, -5.0]]], dtype=np.float32)
    out = run1(lambda x: mb.local_response_norm(x=x, size=2), [x])
    expected = torch.nn.LocalResponseNorm(size=2)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    apples = np.array([[[0.99996257, -6.98716545], [4.99531746, -5.99191284],
                        [-2.99898791, -4.99531746]]], np.float32)  # fmt: skip
    own_square_only = x / (1.0 + 1e-4 / 2 * x**2) ** 0.75
    np.testing.assert_allclose(apples, own_square_only, rtol=1e-6)
    assert not np.allclose(out, apples, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("pad_value", [0.0, 7.5])
def test_crop_resize_against_tensorflow_crop_and_resize(pad_value: float) -> None:
    """ALIGN_CORNERS with normalized boxes is TensorFlow's crop_and_resize (its
    ``extrapolation_value`` is Core ML's ``pad_value``), boxes reaching outside included."""
    import tensorflow as tf

    from tests.unit.coreml._mil import IOS17

    x = randn(2, 3, 6, 7, seed=14)
    boxes = np.array([[0.1, 0.2, 0.8, 0.9], [0.5, -0.2, 1.3, 0.6], [0.9, 0.7, 0.2, 0.1]])
    box_indices = np.array([0, 1, 1], dtype=np.int32)
    out = run1(
        lambda x: mb.crop_resize(
            x=x, boxes=boxes.astype(np.float32), box_indices=box_indices, target_height=4,
            target_width=5, normalized_coordinates=True, sampling_mode="ALIGN_CORNERS",
            pad_value=pad_value,
        ),
        [x],
        target=IOS17,
        expect_ops=["crop_resize"],
    )  # fmt: skip
    expected = tf.image.crop_and_resize(
        np.transpose(x, (0, 2, 3, 1)), boxes, box_indices, (4, 5),
        extrapolation_value=pad_value,
    ).numpy()  # fmt: skip
    np.testing.assert_allclose(out, np.transpose(expected, (0, 3, 1, 2)), rtol=1e-5, atol=1e-5)


def test_crop_resize_on_apples_boxes_gives_tensorflows_7_9_not_the_literal_7_899() -> None:
    """coremltools' iOS16/iOS17 ``TestCropResize`` expects 7.899 for the second box's top-right
    sample; it reads rows 1 and 2 at column 0.9: ``(5.9 + 9.9) / 2 = 7.9``, as TensorFlow
    computes. The conformance driver lists those tests as ``apple literal``."""
    import tensorflow as tf

    from tests.unit.coreml._mil import IOS17

    x = np.arange(1, 17, dtype=np.float32).reshape(1, 1, 4, 4)
    boxes = np.array([[0.1, 0.3, 1.3, 1.0], [0.5, 1.8, 1.0, 0.3], [0.0, 0.4, 0.6, 0.7]], np.float32)
    out = run1(
        lambda x: mb.crop_resize(
            x=x, boxes=boxes, box_indices=np.zeros(3, np.int32), target_height=2, target_width=2,
            normalized_coordinates=True, sampling_mode="ALIGN_CORNERS", pad_value=10.0,
        ),
        [x],
        target=IOS17,
        expect_ops=["crop_resize"],
    )  # fmt: skip
    expected = tf.image.crop_and_resize(
        x.transpose(0, 2, 3, 1), boxes, np.zeros(3, np.int32), (2, 2), extrapolation_value=10.0
    ).numpy()
    np.testing.assert_allclose(out, expected.transpose(0, 3, 1, 2), rtol=1e-6)
    assert abs(float(out[1, 0, 0, 1]) - 7.9) < 1e-5
    apples = [3.1, 5.2, 10.0, 10.0, 10.0, 7.899, 10.0, 13.9, 2.2, 3.1, 9.4, 10.3]
    misses = ~np.isclose(out.ravel(), apples, rtol=1e-5, atol=1e-4)
    assert list(np.flatnonzero(misses)) == [5]


def test_slice_update_replaces_what_slice_by_index_takes() -> None:
    from tests.unit.coreml._mil import IOS18

    x = randn(4, 6, 5, seed=15)
    update = randn(2, 3, seed=16)
    out = run1(
        lambda x, u: mb.slice_update(
            x=x, update=u, begin=np.array([1, 0, 2], np.int32), end=np.array([3, 6, 3], np.int32),
            stride=np.array([1, 2, 1], np.int32), squeeze_mask=[False, False, True],
        ),
        [x, update],
        target=IOS18,
        expect_ops=["slice_update"],
    )  # fmt: skip
    expected = x.copy()
    expected[1:3, 0:6:2, 2] = update
    np.testing.assert_array_equal(out, expected)


def test_reshape_like_and_fill_like() -> None:
    from tests.unit.coreml._mil import IOS16

    x = randn(2, 12, seed=17)
    a, b = randn(2, 3, 9, seed=18), randn(5, 4, seed=19)
    out = run1(
        lambda x, a, b: mb.reshape_like(
            x=x, ref_tensors=(a, b), begins=(0, 1), ends=(2, 2), end_masks=(False, True)
        ),
        [x, a, b],
        target=IOS16,
        expect_ops=["reshape_like"],
    )
    np.testing.assert_array_equal(out, x.reshape(2, 3, 4))
    filled = run1(
        lambda b: mb.fill_like(ref_tensor=b, value=2.5), [b], target=IOS16, expect_ops=["fill_like"]
    )
    np.testing.assert_array_equal(filled, np.full((5, 4), 2.5, np.float32))


def test_pixel_unshuffle_against_pytorch() -> None:
    torch = pytest.importorskip("torch")
    from tests.unit.coreml._mil import IOS16

    x = randn(2, 3, 8, 6, seed=20)
    out = run1(
        lambda x: mb.pixel_unshuffle(x=x, downscale_factor=np.uint32(2)),
        [x],
        target=IOS16,
        expect_ops=["pixel_unshuffle"],
    )
    expected = torch.nn.functional.pixel_unshuffle(torch.from_numpy(x), 2).numpy()
    np.testing.assert_array_equal(out, expected)
