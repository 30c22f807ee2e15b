"""The plain (``antialias = false``) resize and the fit modes, checked against hand-computed
numbers and against TensorFlow's and PyTorch's own non-antialiased resizes."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from edgepack.calib.geometry import (
    FITS,
    Placement,
    bilinear_taps,
    fit_image,
    nearest_indices,
    place,
    resize_plain,
)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# (source (h, w), target (h, w)): up- and downscales, odd sizes, scales under 0.5, 1-pixel sizes
RESIZE_CASES = [
    ((7, 5), (16, 13)),  # upscale, odd
    ((64, 48), (17, 31)),  # downscale in height, upscale-ish in width
    ((100, 80), (7, 9)),  # downscale far below 0.5
    ((33, 65), (33, 65)),  # identity
    ((31, 47), (62, 94)),  # exact 2x up
    ((62, 94), (31, 47)),  # exact 2x down
    ((1, 1), (5, 3)),  # one source pixel
    ((5, 3), (1, 1)),  # one output pixel
    ((1, 9), (4, 1)),  # 1xN
    ((2, 41), (3, 2)),
    ((224, 300), (223, 299)),  # almost identity
]


def _random(shape: tuple[int, int], channels: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*shape, channels), dtype=np.uint8)


def _round_half_up(values: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(values + 0.5), 0, 255).astype(np.int64)


@pytest.fixture(scope="module")
def tf():
    import tensorflow

    return tensorflow


@pytest.fixture(scope="module")
def torch():
    import torch as torch_module

    return torch_module


# --- resize_plain against hand-computed values -------------------------------------------------


def test_bilinear_hand_computed_upscale():
    # 1x2 -> 1x4: x = (d + 0.5) * 2 / 4 - 0.5 = -0.25, 0.25, 0.75, 1.25, clamped to [0, 1]
    row = np.array([[[0], [100]]], dtype=np.uint8)
    assert resize_plain(row, (1, 4), "bilinear")[0, :, 0].tolist() == [0, 25, 75, 100]


def test_bilinear_rounds_half_up():
    # 1x2 -> 1x1 reads x = 0.5: exactly halfway; half up, not half to even
    assert resize_plain(np.array([[[0], [1]]], np.uint8), (1, 1), "bilinear").item() == 1
    assert resize_plain(np.array([[[2], [3]]], np.uint8), (1, 1), "bilinear").item() == 3
    # 2x2 -> 1x1 is the mean of four: (10 + 11 + 10 + 10) / 4 = 10.25 -> 10
    block = np.array([[[10], [11]], [[10], [10]]], np.uint8)
    assert resize_plain(block, (1, 1), "bilinear").item() == 10


def test_bilinear_ignores_far_pixels_on_downscale():
    # No antialiasing: 8 -> 2 reads x = 1.5 and 5.5 only, so pixels 0, 3, 4 and 7 never count
    row = np.array([[[255], [0], [0], [255], [255], [0], [0], [255]]], np.uint8)
    assert resize_plain(row, (1, 2), "bilinear")[0, :, 0].tolist() == [0, 0]


def test_nearest_hand_computed():
    row = np.array([[[10], [20]]], np.uint8)
    assert resize_plain(row, (1, 4), "nearest")[0, :, 0].tolist() == [10, 10, 20, 20]
    # 5 -> 2: floor((d + 0.5) * 5 / 2) = floor(1.25), floor(3.75) = 1, 3
    assert nearest_indices(5, 2).tolist() == [1, 3]
    # an exact tie takes the higher index: 2 -> 1 reads (0.5) * 2 = 1.0 -> pixel 1
    assert nearest_indices(2, 1).tolist() == [1]


def test_taps_clamp_at_edges():
    i0, i1, f = bilinear_taps(3, 6)  # x = -0.25, 0.25, 0.75, 1.25, 1.75, 2.25
    assert i0.tolist() == [0, 0, 0, 1, 1, 2]
    assert i1.tolist() == [1, 1, 1, 2, 2, 2]
    assert f.tolist() == [0.0, 0.25, 0.75, 0.25, 0.75, 0.0]


def test_identity_and_dtype():
    pixels = _random((13, 17), 4)
    out = resize_plain(pixels, (13, 17), "bilinear")
    assert out.dtype == np.uint8
    assert np.array_equal(out, pixels)
    assert np.array_equal(resize_plain(pixels, (13, 17), "nearest"), pixels)


def test_refuses_bad_input():
    with pytest.raises(ValueError, match="uint8"):
        resize_plain(np.zeros((4, 4, 3), np.float32), (2, 2), "bilinear")
    with pytest.raises(ValueError, match="uint8"):
        resize_plain(np.zeros((4, 4), np.uint8), (2, 2), "bilinear")
    with pytest.raises(ValueError, match="positive"):
        resize_plain(np.zeros((4, 4, 3), np.uint8), (0, 2), "bilinear")
    with pytest.raises(ValueError, match="method"):
        resize_plain(np.zeros((4, 4, 3), np.uint8), (2, 2), "bicubic")


# --- resize_plain against TensorFlow and PyTorch ------------------------------------------------


@pytest.mark.parametrize(("source", "target"), RESIZE_CASES)
def test_bilinear_matches_tensorflow(tf, source, target):
    pixels = _random(source, seed=sum(source) + sum(target))
    ours = resize_plain(pixels, target, "bilinear").astype(np.int64)
    theirs = tf.image.resize(
        pixels[None].astype(np.float32), target, method="bilinear", antialias=False
    ).numpy()[0]
    diff = np.abs(ours - _round_half_up(theirs))
    assert diff.max() <= 1
    # TF works in float32: the 1-level differences are float rounding at .5, so they are rare
    assert (diff == 0).mean() >= 0.99


@pytest.mark.parametrize(("source", "target"), RESIZE_CASES)
def test_bilinear_matches_torch(torch, source, target):
    pixels = _random(source, seed=sum(source) * 3 + sum(target))
    ours = resize_plain(pixels, target, "bilinear").astype(np.int64)
    nchw = torch.from_numpy(pixels).permute(2, 0, 1)[None]
    kwargs = {"size": target, "mode": "bilinear", "align_corners": False, "antialias": False}
    as_float = torch.nn.functional.interpolate(nchw.float(), **kwargs)[0].permute(1, 2, 0).numpy()
    diff = np.abs(ours - _round_half_up(as_float))
    assert diff.max() <= 1
    assert (diff == 0).mean() >= 0.99
    # torch's own uint8 kernel (fixed-point weights) lands within one level as well
    as_uint8 = torch.nn.functional.interpolate(nchw, **kwargs)[0].permute(1, 2, 0).numpy()
    assert np.abs(ours - as_uint8.astype(np.int64)).max() <= 1


def _ties(n_in: int, n_out: int) -> np.ndarray:
    """Output pixels whose half-pixel coordinate lies exactly between two source pixels."""
    d = np.arange(n_out)
    return ((2 * d + 1) * n_in) % (2 * n_out) == 0


@pytest.mark.parametrize(("source", "target"), [*RESIZE_CASES, ((2, 41), (41, 2))])
def test_nearest_matches_tensorflow(tf, source, target):
    # Found with TF 2.21: tf.image.resize(method="nearest") takes floor((d + 0.5) * scale) in
    # float32 (HalfPixelScalerForNN in resize_nearest_neighbor_op.cc), the same rule as ours.
    # It differs only at exact ties ((2d + 1) * in a multiple of 2 * out) when in / out is not
    # a float32 number: e.g. 2 -> 41, d = 20 reads exactly 1.0, float32 gives 0.99999994 and TF
    # takes pixel 0 where we take pixel 1. Over all size pairs up to 200 x 200 that happens on
    # 314 of 41,528 tie pixels and never elsewhere. PyTorch's nearest-exact behaves the same.
    # Across the whole index range, columns encode their index so a mismatch names itself.
    h, w = source
    index = np.arange(h * w, dtype=np.float32).reshape(h, w, 1)
    theirs = tf.image.resize(index[None], target, method="nearest").numpy()[0, :, :, 0]
    rows, cols = nearest_indices(h, target[0]), nearest_indices(w, target[1])
    ours = (rows[:, None] * w + cols[None, :]).astype(np.float32)
    differs = theirs != ours
    tie = _ties(h, target[0])[:, None] | _ties(w, target[1])[None, :]
    assert not (differs & ~tie).any()
    if source == (2, 41) and target == (41, 2):
        assert differs.sum() == 2 * 1  # row 20 (a float32 tie), both columns
        assert differs[20].all()
    # and on uint8 pixels the whole image is then equal wherever no tie was involved
    pixels = _random(source, seed=7)
    tf_pixels = tf.image.resize(pixels[None], target, method="nearest").numpy()[0]
    same = (tf_pixels.astype(np.int64) == resize_plain(pixels, target, "nearest")).all(axis=2)
    assert same[~tie].all()


def test_nearest_matches_torch_nearest_exact(torch):
    pixels = _random((37, 53), seed=3)
    for target in [(11, 19), (74, 106), (5, 200), (36, 52)]:
        nchw = torch.from_numpy(pixels).permute(2, 0, 1)[None]
        theirs = torch.nn.functional.interpolate(nchw, size=target, mode="nearest-exact")
        assert np.array_equal(
            theirs[0].permute(1, 2, 0).numpy(), resize_plain(pixels, target, "nearest")
        )


def test_differs_from_antialiased_pillow_on_downscale():
    # why the contract needs `antialias = false`: Pillow's BILINEAR widens its filter
    from PIL import Image

    pixels = _random((120, 160), seed=11)
    pillow = np.asarray(Image.fromarray(pixels).resize((40, 30), Image.Resampling.BILINEAR))
    assert np.abs(pillow.astype(np.int64) - resize_plain(pixels, (30, 40), "bilinear")).max() > 50


def test_large_image_is_fast():
    pixels = np.zeros((3000, 4000, 3), np.uint8)
    pixels[::7] = 200
    start = time.perf_counter()
    small = resize_plain(pixels, (224, 224), "bilinear")
    half = resize_plain(pixels, (1500, 2000), "bilinear")
    nearest = resize_plain(pixels, (640, 640), "nearest")
    elapsed = time.perf_counter() - start
    assert small.shape == (224, 224, 3) and half.shape == (1500, 2000, 3)
    assert nearest.shape == (640, 640, 3)
    assert elapsed < 2.0, f"{elapsed:.2f} s"


# --- place ---------------------------------------------------------------------------------------

# (source (h, w), target (h, w), fit, crop (l, t, r, b), size (h, w), offset (top, left))
PLACE_CASES = [
    ((480, 640), (224, 224), "stretch", (0, 0, 640, 480), (224, 224), (0, 0)),
    ((10, 20), (100, 300), "stretch", (0, 0, 20, 10), (100, 300), (0, 0)),
    # wide source: crop width = sh * tw / th = 480, left = (640 - 480) // 2
    ((480, 640), (224, 224), "center_crop", (80, 0, 560, 480), (224, 224), (0, 0)),
    # tall source
    ((640, 480), (224, 224), "center_crop", (0, 80, 480, 560), (224, 224), (0, 0)),
    # same aspect ratio: the whole image
    ((300, 400), (150, 200), "center_crop", (0, 0, 400, 300), (150, 200), (0, 0)),
    # rounding half up: crop width = 3 * 3 / 2 = 4.5 -> 5, left = (10 - 5) // 2 = 2
    ((3, 10), (2, 3), "center_crop", (2, 0, 7, 3), (2, 3), (0, 0)),
    ((10, 3), (3, 2), "center_crop", (0, 2, 3, 7), (3, 2), (0, 0)),
    # odd margin: crop width 100 of 333, left = 233 // 2 = 116 (the extra column is cut right)
    ((100, 333), (64, 64), "center_crop", (116, 0, 216, 100), (64, 64), (0, 0)),
    # 1xN: one column, the middle one
    ((1, 100), (10, 10), "center_crop", (49, 0, 50, 1), (10, 10), (0, 0)),
    # the crop would round to 0 rows: at least 1
    ((1, 100), (1, 300), "center_crop", (0, 0, 100, 1), (1, 300), (0, 0)),
    # upscale: crop width 10 of 20
    ((10, 20), (100, 100), "center_crop", (5, 0, 15, 10), (100, 100), (0, 0)),
    # letterbox wide: scale = min(320 / 480, 320 / 640) = 0.5 -> 240 x 320, 40 rows above
    ((480, 640), (320, 320), "letterbox", (0, 0, 640, 480), (240, 320), (40, 0)),
    # letterbox tall
    ((640, 480), (320, 320), "letterbox", (0, 0, 480, 640), (320, 240), (0, 40)),
    # height = 100 * 64 / 300 = 21.33 -> 21; offset (64 - 21) // 2 = 21 (22 rows below)
    ((100, 300), (64, 64), "letterbox", (0, 0, 300, 100), (21, 64), (21, 0)),
    # width = 2 * 3 / 5 = 1.2 -> 1; offset (3 - 1) // 2 = 1
    ((5, 2), (3, 3), "letterbox", (0, 0, 2, 5), (3, 1), (0, 1)),
    # rounding half up: height = 3 * 2 / 4 = 1.5 -> 2
    ((3, 4), (2, 2), "letterbox", (0, 0, 4, 3), (2, 2), (0, 0)),
    # 1xN: height = 1 * 10 / 100 = 0.1 -> at least 1; offset (10 - 1) // 2 = 4
    ((1, 100), (10, 10), "letterbox", (0, 0, 100, 1), (1, 10), (4, 0)),
    # upscale: 10 x 20 -> 50 x 100 in 100 x 100
    ((10, 20), (100, 100), "letterbox", (0, 0, 20, 10), (50, 100), (25, 0)),
    # same aspect ratio: fills the target
    ((300, 400), (150, 200), "letterbox", (0, 0, 400, 300), (150, 200), (0, 0)),
]


@pytest.mark.parametrize(("source", "target", "fit", "crop", "size", "offset"), PLACE_CASES)
def test_place(source, target, fit, crop, size, offset):
    assert place(source, target, fit) == Placement(crop=crop, size=size, offset=offset)


@pytest.mark.parametrize("fit", FITS)
def test_place_stays_inside(fit):
    rng = np.random.default_rng(1)
    for _ in range(300):
        source = (int(rng.integers(1, 60)), int(rng.integers(1, 60)))
        target = (int(rng.integers(1, 60)), int(rng.integers(1, 60)))
        p = place(source, target, fit)
        left, top, right, bottom = p.crop
        assert 0 <= left < right <= source[1] and 0 <= top < bottom <= source[0]
        assert 1 <= p.size[0] <= target[0] and 1 <= p.size[1] <= target[1]
        assert p.offset[0] + p.size[0] <= target[0] and p.offset[1] + p.size[1] <= target[1]
        if fit == "letterbox":  # one side always fills the target
            assert p.size[0] == target[0] or p.size[1] == target[1]
        if fit == "center_crop":  # one side always keeps the whole source
            assert (right - left) == source[1] or (bottom - top) == source[0]


def test_place_refuses_bad_arguments():
    with pytest.raises(ValueError, match="fit"):
        place((10, 10), (5, 5), "cover")
    with pytest.raises(ValueError, match="positive"):
        place((0, 10), (5, 5), "stretch")


# --- fit_image -----------------------------------------------------------------------------------


def test_letterbox_pads_the_border_and_centres_the_content():
    pixels = np.full((40, 80, 3), 200, np.uint8)
    out = fit_image(pixels, (64, 64), "letterbox", "bilinear", (10, 20, 30))
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    # 40 x 80 -> 32 x 64, placed at row 16
    assert (out[:16] == [10, 20, 30]).all()
    assert (out[48:] == [10, 20, 30]).all()
    assert (out[16:48] == 200).all()


def test_letterbox_content_is_the_plain_resize():
    pixels = _random((30, 50), seed=5)
    out = fit_image(pixels, (40, 40), "letterbox", "bilinear", (0,))
    # 30 x 50 -> 24 x 40 at row (40 - 24) // 2 = 8
    assert np.array_equal(out[8:32], resize_plain(pixels, (24, 40), "bilinear"))
    assert (out[:8] == 0).all() and (out[32:] == 0).all()


def test_center_crop_keeps_the_middle():
    pixels = np.zeros((20, 60, 1), np.uint8)
    pixels[:, 20:40] = 255  # the middle third is white, the sides black
    for method in ("bilinear", "nearest"):
        out = fit_image(pixels, (10, 10), "center_crop", method, (0,))
        assert out.shape == (10, 10, 1)
        assert (out == 255).all()


def test_center_crop_odd_margin_cuts_right():
    pixels = np.arange(5, dtype=np.uint8).reshape(1, 5, 1)  # columns 0..4
    out = fit_image(pixels, (1, 2), "center_crop", "nearest", (0,))
    # crop width = 1 * 2 / 1 = 2, left = (5 - 2) // 2 = 1: columns 1 and 2
    assert out[0, :, 0].tolist() == [1, 2]


def test_stretch_is_resize_plain():
    pixels = _random((21, 34), seed=9)
    assert np.array_equal(
        fit_image(pixels, (13, 8), "stretch", "nearest", (0, 0, 0)),
        resize_plain(pixels, (13, 8), "nearest"),
    )


def test_fit_image_refuses_bad_pad():
    pixels = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="pad"):
        fit_image(pixels, (2, 2), "letterbox", "bilinear", (1, 2))
    with pytest.raises(ValueError, match="pad"):
        fit_image(pixels, (2, 2), "letterbox", "bilinear", (300,))
