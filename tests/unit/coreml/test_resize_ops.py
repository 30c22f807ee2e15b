"""Resizing kernels of the Core ML emulator (``upsample_*``, ``resize_*``, iOS17 ``resize``)
against TensorFlow's resize ops (where coremltools documents or converts the correspondence)
and NumPy references built from the grid formulas of coremltools' ``resize_bilinear``."""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.coreml._mil import IOS15, IOS16, IOS17, assert_close, mb, randn, run1

X = randn(2, 3, 5, 6, seed=1)


def _tf_bilinear(x: np.ndarray, size: tuple[int, int], align: bool, half: bool) -> np.ndarray:
    import tensorflow as tf

    y = tf.compat.v1.image.resize_bilinear(
        x.transpose(0, 2, 3, 1), size, align_corners=align, half_pixel_centers=half
    )
    return y.numpy().transpose(0, 3, 1, 2)


def _tf_nearest(x: np.ndarray, size: tuple[int, int], half: bool) -> np.ndarray:
    import tensorflow as tf

    y = tf.compat.v1.image.resize_nearest_neighbor(
        x.transpose(0, 2, 3, 1), size, align_corners=False, half_pixel_centers=half
    )
    return y.numpy().transpose(0, 3, 1, 2)


def _grid(mode: str, x_in: int, x_out: int) -> np.ndarray:
    """Sampling grid of coremltools' resize_bilinear notes, clamped to [0, Xin - 1]."""
    i = np.arange(x_out, dtype=np.float64)
    if mode == "STRICT_ALIGN_CORNERS" or (mode == "ALIGN_CORNERS" and x_out > 1):
        grid = i * (x_in - 1) / (x_out - 1) if x_out > 1 else np.zeros(1)
    elif mode == "ALIGN_CORNERS":
        grid = np.full(1, (x_in - 1) / 2)
    elif mode == "DEFAULT":
        grid = i * (x_in - x_in / x_out) / (x_out - 1) if x_out > 1 else np.zeros(1)
    elif mode == "OFFSET_CORNERS":
        delta = max(1, x_in - 1) / x_out
        grid = 0.5 * delta + i * delta
    else:  # UNALIGN_CORNERS
        spacing = x_in / x_out
        grid = i * spacing + 0.5 * spacing - 0.5
    return np.clip(grid, 0, x_in - 1)


def _interpolation_matrix(grid: np.ndarray, x_in: int) -> np.ndarray:
    """(out, in) matrix of linear interpolation weights at ``grid``."""
    low = np.floor(grid).astype(int)
    high = np.minimum(low + 1, x_in - 1)
    frac = grid - low
    matrix = np.zeros((grid.size, x_in))
    matrix[np.arange(grid.size), low] += 1 - frac
    matrix[np.arange(grid.size), high] += frac
    return matrix


def _np_bilinear(x: np.ndarray, mode: str, out_h: int, out_w: int) -> np.ndarray:
    rows = _interpolation_matrix(_grid(mode, x.shape[-2], out_h), x.shape[-2])
    cols = _interpolation_matrix(_grid(mode, x.shape[-1], out_w), x.shape[-1])
    return np.einsum("oh,nchw,pw->ncop", rows, x.astype(np.float64), cols)


def test_grid_formulas_reproduce_the_documented_examples() -> None:
    """The reference grid reproduces the examples of coremltools' resize_bilinear notes."""
    examples = {
        ("UNALIGN_CORNERS", 5): [0.0, 0.1, 0.5, 0.9, 1.0],
        ("STRICT_ALIGN_CORNERS", 5): [0.0, 0.25, 0.5, 0.75, 1.0],
        ("DEFAULT", 5): [0.0, 0.4, 0.8, 1.0, 1.0],
        ("OFFSET_CORNERS", 5): [0.1, 0.3, 0.5, 0.7, 0.9],
        ("UNALIGN_CORNERS", 6): [0.0, 0.0, 0.33, 0.67, 1.0, 1.0],
        ("DEFAULT", 6): [0.0, 0.33, 0.67, 1.0, 1.0, 1.0],
        ("OFFSET_CORNERS", 6): [0.08, 0.25, 0.42, 0.58, 0.75, 0.92],
    }
    for (mode, x_out), grid in examples.items():
        np.testing.assert_allclose(_grid(mode, 2, x_out), grid, atol=0.005)  # 2-digit doc


SIZES = {"up": (8, 11), "down": (3, 4), "mixed": (7, 2), "same": (5, 6), "to-one": (1, 1)}
# sampling mode -> TF (align_corners, half_pixel_centers) per coremltools' notes, or None
TF_MODES = {
    "DEFAULT": (False, False),
    "STRICT_ALIGN_CORNERS": (True, False),
    "UNALIGN_CORNERS": (False, True),
    "ALIGN_CORNERS": None,
    "OFFSET_CORNERS": None,
}


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
@pytest.mark.parametrize("mode", TF_MODES, ids=TF_MODES)
def test_resize_bilinear(mode: str, size: tuple[int, int]) -> None:
    out = run1(
        lambda x: mb.resize_bilinear(
            x=x, target_size_height=size[0], target_size_width=size[1], sampling_mode=mode
        ),
        [X],
        expect_ops=["resize_bilinear"],
    )
    if TF_MODES[mode] is not None:
        assert_close(out, _tf_bilinear(X, size, *TF_MODES[mode]), rtol=1e-5)
    assert_close(out, _np_bilinear(X, mode, *size), rtol=1e-5)


def test_resize_bilinear_align_corners_to_one_pixel_takes_the_centre() -> None:
    """ALIGN_CORNERS differs from STRICT_ALIGN_CORNERS only for an output of 1:
    grid_point = (Xin - 1) / 2."""
    out = run1(
        lambda x: mb.resize_bilinear(
            x=x, target_size_height=1, target_size_width=1, sampling_mode="ALIGN_CORNERS"
        ),
        [X],
    )
    # (5 - 1) / 2 = row 2; (6 - 1) / 2 = 2.5, between columns 2 and 3
    expected = 0.5 * (X[:, :, 2:3, 2:3] + X[:, :, 2:3, 3:4])
    assert_close(out, expected, rtol=1e-5)


def test_resize_bilinear_rank3() -> None:
    x = randn(3, 4, 5, seed=2)
    out = run1(
        lambda x: mb.resize_bilinear(
            x=x, target_size_height=6, target_size_width=3, sampling_mode="UNALIGN_CORNERS"
        ),
        [x],
    )
    assert_close(out, _np_bilinear(x[None], "UNALIGN_CORNERS", 6, 3)[0], rtol=1e-5)


# upsample_bilinear: spacing from the output size (recompute_scale_factor=True):
# align_corners=True  = ResizeBilinear(align_corners=True, half_pixel_centers=False);
# align_corners=False = ResizeBilinear(align_corners=False, half_pixel_centers=True).
SCALES = {"x2": (2, 2), "x3-x1": (3, 1), "x1.5-x2.5": (1.5, 2.5), "x0.5": (0.5, 0.5)}


@pytest.mark.parametrize("align_corners", [True, False], ids=["align", "half-pixel"])
@pytest.mark.parametrize("scales", SCALES.values(), ids=SCALES.keys())
def test_upsample_bilinear(scales: tuple[float, float], align_corners: bool) -> None:
    sh, sw = scales
    out = run1(
        lambda x: mb.upsample_bilinear(
            x=x, scale_factor_height=sh, scale_factor_width=sw, align_corners=align_corners
        ),
        [X],
        target=IOS15,
        expect_ops=["upsample_bilinear"],
    )
    size = (int(np.floor(5 * sh)), int(np.floor(6 * sw)))
    expected = _tf_bilinear(X, size, align=align_corners, half=not align_corners)
    assert_close(out, expected, rtol=1e-5)


@pytest.mark.parametrize("half_pixel_centers", [False, True])
@pytest.mark.parametrize("scales", [(2, 3), (1.5, 2.5)], ids=["integer", "fractional"])
def test_upsample_bilinear_half_pixel_centers_ios16(
    scales: tuple[float, float], half_pixel_centers: bool
) -> None:
    """iOS16 adds ``half_pixel_centers`` (coremltools' TF frontend maps ResizeBilinear's
    (align_corners, half_pixel_centers) to it directly)."""
    sh, sw = scales
    out = run1(
        lambda x: mb.upsample_bilinear(
            x=x,
            scale_factor_height=sh,
            scale_factor_width=sw,
            align_corners=False,
            half_pixel_centers=half_pixel_centers,
        ),
        [X],
        target=IOS16,
        expect_ops=["upsample_bilinear"],
    )
    size = (int(np.floor(5 * sh)), int(np.floor(6 * sw)))
    assert_close(out, _tf_bilinear(X, size, align=False, half=half_pixel_centers), rtol=1e-5)


@pytest.mark.parametrize("scales", [(2, 2), (3, 1), (1, 4)], ids=["x2", "x3-x1", "x1-x4"])
def test_upsample_nearest_neighbor_integer_scales(scales: tuple[int, int]) -> None:
    out = run1(
        lambda x: mb.upsample_nearest_neighbor(
            x=x, scale_factor_height=scales[0], scale_factor_width=scales[1]
        ),
        [X],
        expect_ops=["upsample_nearest_neighbor"],
    )
    expected = np.repeat(np.repeat(X, scales[0], axis=2), scales[1], axis=3)
    np.testing.assert_array_equal(out, expected)  # exact: a copy


@pytest.mark.parametrize("size", [(6, 9), (7, 8), (8, 13)], ids=["6x9", "7x8", "8x13"])
def test_upsample_nearest_neighbor_fractional_scales(size: tuple[int, int]) -> None:
    """coremltools' TF frontend converts ResizeNearestNeighbor(align_corners=False,
    half_pixel_centers=False) to a fractional size ``out`` into upsample_nearest_neighbor with
    scale ``(out + 1e-4) / in``: the kernel must reproduce TensorFlow there."""
    x = randn(1, 2, 4, 6, seed=3)
    sh, sw = (size[0] + 1e-4) / 4, (size[1] + 1e-4) / 6
    out = run1(
        lambda x: mb.upsample_nearest_neighbor(x=x, scale_factor_height=sh, scale_factor_width=sw),
        [x],
        expect_ops=["upsample_nearest_neighbor"],
    )
    np.testing.assert_array_equal(out, _tf_nearest(x, size, half=False))  # exact: a copy


@pytest.mark.parametrize(
    "size", [(10, 12), (8, 9), (3, 4), (2, 11)], ids=["x2", "up", "down", "mixed"]
)
def test_resize_nearest_neighbor(size: tuple[int, int]) -> None:
    """coremltools' TF frontend converts ResizeNearestNeighbor(align_corners=False,
    half_pixel_centers=True) with a known size into resize_nearest_neighbor."""
    out = run1(
        lambda x: mb.resize_nearest_neighbor(
            x=x, target_size_height=size[0], target_size_width=size[1]
        ),
        [X],
        expect_ops=["resize_nearest_neighbor"],
    )
    np.testing.assert_array_equal(out, _tf_nearest(X, size, half=True))  # exact: a copy


@pytest.mark.parametrize(
    "mode", ["DEFAULT", "STRICT_ALIGN_CORNERS", "UNALIGN_CORNERS", "OFFSET_CORNERS"]
)
def test_resize_ios17_linear(mode: str) -> None:
    out = run1(
        lambda x: mb.resize(
            x=x, shape=np.array([7, 4], np.int32), resized_dims=np.uint32(2), sampling_mode=mode
        ),
        [X],
        target=IOS17,
        expect_ops=["resize"],
    )
    assert_close(out, _np_bilinear(X, mode, 7, 4), rtol=1e-5)


def test_resize_ios17_one_dim_and_zero_keeps_the_input_size() -> None:
    """``resized_dims=1`` resizes only the last axis; a 0 in ``shape`` keeps x's size."""
    out = run1(
        lambda x: mb.resize(
            x=x,
            shape=np.array([0, 0, 4, 9], np.int32),
            resized_dims=np.uint32(1),
            sampling_mode="UNALIGN_CORNERS",
        ),
        [X],
        target=IOS17,
        expect_ops=["resize"],
    )
    assert_close(out, _np_bilinear(X, "UNALIGN_CORNERS", 5, 9), rtol=1e-5)


def test_resize_ios17_nearest_neighbor() -> None:
    """coremltools' TF frontend uses resize(NEAREST_NEIGHBOR) for ResizeNearestNeighbor with
    half_pixel_centers=True and a dynamic size: TensorFlow's half-pixel nearest."""
    out = run1(
        lambda x: mb.resize(
            x=x,
            shape=np.array([0, 0, 3, 10], np.int32),
            resized_dims=np.uint32(2),
            interpolation_mode="NEAREST_NEIGHBOR",
        ),
        [X],
        target=IOS17,
        expect_ops=["resize"],
    )
    np.testing.assert_array_equal(out, _tf_nearest(X, (3, 10), half=True))  # exact: a copy
