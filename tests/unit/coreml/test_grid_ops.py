"""``resample`` and ``affine`` in the Core ML emulator against PyTorch's ``grid_sample`` and
``affine_grid`` (bilinear and nearest; zeros, border and both mirror paddings; every
coordinate mode), a constant padding value, and the values Apple's op tests expect."""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.coreml._mil import IOS15, IOS16, assert_close, mb, randn, run1

torch = pytest.importorskip("torch")
F = torch.nn.functional

IMAGE = randn(2, 3, 5, 7, seed=1)


def _points(seed: int) -> np.ndarray:
    """Normalized [-1, 1] sample points, a third of them outside the image, none on a
    half-pixel tie (where nearest sampling may round either way)."""
    return np.random.default_rng(seed).uniform(-1.6, 1.6, (2, 4, 6, 2)).astype(np.float32)


def _resample(x, coords, sampling, padding, mode, align, value=0.0, target=IOS15):  # type: ignore[no-untyped-def]
    return run1(
        lambda x, c: mb.resample(
            x=x,
            coordinates=c,
            sampling_mode=sampling,
            padding_mode=padding,
            padding_value=value,
            coordinates_mode=mode,
            align_corners=align,
        ),
        [x, coords],
        target=target,
        expect_ops=["resample"],
    )


def _torch(points: np.ndarray, sampling: str, padding: str, align: bool) -> np.ndarray:
    return F.grid_sample(
        torch.from_numpy(IMAGE),
        torch.from_numpy(points),
        mode=sampling,
        padding_mode=padding,
        align_corners=align,
    ).numpy()


@pytest.mark.parametrize("sampling", ["bilinear", "nearest"])
# PyTorch's reflection mirrors about the edge pixels' centres with align_corners (MIL's
# "reflection"), about their outer edges without (MIL's "symmetric")
@pytest.mark.parametrize(
    ("padding", "align"),
    [("constant", True), ("constant", False), ("border", True), ("border", False),
     ("reflection", True), ("symmetric", False)],
)  # fmt: skip
def test_resample_against_pytorch(sampling: str, padding: str, align: bool) -> None:
    points = _points(seed=2)
    ours = _resample(IMAGE, points, sampling, padding, "normalized_minus_one_to_one", align)
    torch_padding = {"constant": "zeros", "border": "border"}.get(padding, "reflection")
    assert_close(ours, _torch(points, sampling, torch_padding, align), rtol=1e-5)


@pytest.mark.parametrize("align", [True, False])
def test_coordinate_modes_agree(align: bool) -> None:
    """The same points in pixels, in [0, 1] and in [-1, 1] sample the same values."""
    points = _points(seed=3).astype(np.float64)
    size = np.array([7, 5])  # (W, H)
    zero_to_one = (points + 1) / 2
    pixels = zero_to_one * (size - 1) if align else zero_to_one * size - 0.5
    expected = _torch(points.astype(np.float32), "bilinear", "border", align)
    for mode, coords in [
        ("unnormalized", pixels),
        ("normalized_zero_to_one", zero_to_one),
        ("normalized_minus_one_to_one", points),
    ]:
        ours = _resample(IMAGE, coords.astype(np.float32), "bilinear", "border", mode, align)
        assert_close(ours, expected, rtol=1e-5)


def test_constant_padding_value_blends_like_a_shifted_image() -> None:
    points = _points(seed=4)
    value = 6.17
    ours = _resample(IMAGE, points, "bilinear", "constant", "normalized_minus_one_to_one",
                     True, value=value)  # fmt: skip
    expected = (
        F.grid_sample(
            torch.from_numpy(IMAGE - value), torch.from_numpy(points), align_corners=True
        ).numpy()
        + value
    )
    assert_close(ours, expected, rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_apples_literal_values(dtype: type) -> None:
    """The expected values of coremltools' ``TestResample`` smoke test (iOS16 coordinates)."""
    x = np.array([11.0, 22.0, 33.0, 44.0], np.float32).reshape(1, 1, 2, 2)
    if dtype is np.int32:
        coords = np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int32).reshape(1, 2, 2, 2)
        expected = [[27.5, 44.0, 27.5, 44.0], [11.0, 44.0, 11.0, 44.0]]
    else:
        coords = np.array([-1.0, -2.0, -3.7, -1.0, 0.0, 0.0, 3.5, 1.2], np.float32)
        coords = coords.reshape(1, 2, 2, 2)
        expected = [[8.585, 6.17, 27.5, 6.17], [22.0, 33.0, 11.0, 33.0]]
    bilinear = _resample(x, coords, "bilinear", "constant", "normalized_minus_one_to_one",
                         True, value=6.17, target=IOS16)  # fmt: skip
    nearest = _resample(x, coords, "nearest", "symmetric", "normalized_zero_to_one", False,
                        target=IOS16)  # fmt: skip
    assert_close(bilinear.ravel(), np.array(expected[0], np.float32), rtol=1e-6)
    assert_close(nearest.ravel(), np.array(expected[1], np.float32), rtol=1e-6)


@pytest.mark.parametrize("align", [True, False])
@pytest.mark.parametrize("shared", [True, False])
def test_affine_against_pytorch(align: bool, shared: bool) -> None:
    theta = randn(1 if shared else 2, 6, seed=5, scale=0.6) + np.array(
        [1, 0, 0, 0, 1, 0], np.float32
    )
    ours = run1(
        lambda x, t: mb.affine(
            x=x,
            transform_matrix=t,
            output_height=4,
            output_width=9,
            sampling_mode="bilinear",
            padding_mode="constant",
            padding_value=0.0,
            coordinates_mode="normalized_minus_one_to_one",
            align_corners=align,
        ),
        [IMAGE, theta],
        target=IOS15,
        expect_ops=["affine"],
    )
    grid = F.affine_grid(
        torch.from_numpy(np.broadcast_to(theta, (2, 6)).reshape(2, 2, 3).copy()),
        [2, 3, 4, 9],
        align_corners=align,
    )
    expected = F.grid_sample(torch.from_numpy(IMAGE), grid, align_corners=align).numpy()
    assert_close(ours, expected, rtol=1e-5)
