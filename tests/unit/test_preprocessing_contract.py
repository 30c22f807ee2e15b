"""The preprocessing contract, implemented a second time from its written specification alone
(NumPy, no Pillow, no edgepack.calib.geometry), must give edgepack's input tensors.

This is what an app developer on another platform does: read the manifest's fields and
``conventions``, decode the image, and compute. Images are written as binary PPM/PGM (a
header and raw bytes), so the reference decodes them without an image library.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgepack.calib.contract import FIELD_MEANINGS, Preprocessing
from edgepack.calib.images import load_image


def write_pnm(path: Path, pixels: np.ndarray) -> Path:
    """A binary PPM (RGB) or PGM (grey) file."""
    height, width = pixels.shape[:2]
    magic = b"P6" if pixels.ndim == 3 else b"P5"
    path.write_bytes(magic + f"\n{width} {height}\n255\n".encode() + pixels.tobytes())
    return path


def read_pnm(path: Path) -> np.ndarray:
    data = path.read_bytes()
    magic, width, height, _maxval, raster = data.split(maxsplit=4)
    channels = 3 if magic == b"P6" else 1
    return np.frombuffer(raster, np.uint8).reshape(int(height), int(width), channels)


# ---------------------------------------------------------------- the specification, again


def rhu(p: int, q: int) -> int:
    """p / q rounded half up, in integers."""
    return (2 * p + q) // (2 * q)


def placement(sh: int, sw: int, th: int, tw: int, fit: str) -> tuple:
    if fit == "stretch":
        return (0, 0, sw, sh), (th, tw), (0, 0)
    if fit == "center_crop":
        if sw * th > sh * tw:
            crop_w = max(1, rhu(sh * tw, th))
            left = (sw - crop_w) // 2
            return (left, 0, left + crop_w, sh), (th, tw), (0, 0)
        if sw * th < sh * tw:
            crop_h = max(1, rhu(sw * th, tw))
            top = (sh - crop_h) // 2
            return (0, top, sw, top + crop_h), (th, tw), (0, 0)
        return (0, 0, sw, sh), (th, tw), (0, 0)
    if th * sw <= tw * sh:
        new_h, new_w = th, min(tw, max(1, rhu(sw * th, sh)))
    else:
        new_h, new_w = min(th, max(1, rhu(sh * tw, sw))), tw
    return (0, 0, sw, sh), (new_h, new_w), ((th - new_h) // 2, (tw - new_w) // 2)


def resize_axis(values: np.ndarray, out: int, axis: int, method: str) -> np.ndarray:
    n = values.shape[axis]
    d = np.arange(out)
    if method == "nearest":
        index = np.minimum(((2 * d + 1) * n) // (2 * out), n - 1)
        return np.take(values, index, axis=axis)
    x = np.clip(((2 * d + 1) * n - out) / (2 * out), 0, n - 1)
    i0 = np.floor(x).astype(int)
    i1 = np.minimum(i0 + 1, n - 1)
    f = x - i0
    shape = [1] * values.ndim
    shape[axis] = out
    f = f.reshape(shape)
    return (1 - f) * np.take(values, i0, axis=axis) + f * np.take(values, i1, axis=axis)


def reference(path: Path, pre: dict) -> np.ndarray:
    """Follow the manifest's preprocessing fields (antialias = false) step by step."""
    assert pre["antialias"] is False and pre["exif_orientation"] == "ignore"
    pixels = read_pnm(path).astype(np.int64)
    if pre["color"] == "GRAY" and pixels.shape[2] == 3:
        r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
        pixels = ((19595 * r + 38470 * g + 7471 * b + 32768) >> 16)[..., None]
    th, tw = pre["size"]
    sh, sw = pixels.shape[:2]
    (left, top, right, bottom), (new_h, new_w), (off_top, off_left) = placement(
        sh, sw, th, tw, pre["fit"]
    )
    region = pixels[top:bottom, left:right].astype(np.float64)
    region = resize_axis(region, new_w, 1, pre["resize"])  # along the row first
    region = resize_axis(region, new_h, 0, pre["resize"])
    region = np.clip(np.floor(region + 0.5), 0, 255)
    channels = region.shape[2]
    pad = pre["pad"] * channels if len(pre["pad"]) == 1 else pre["pad"]
    if pre["color"] == "BGR":
        pad = pad[::-1]  # pad is given in the contract's colour order
    canvas = np.empty((th, tw, channels))
    canvas[:] = pad
    canvas[off_top : off_top + new_h, off_left : off_left + new_w] = region
    if pre["color"] == "BGR":
        canvas = canvas[..., ::-1]
    mean = np.asarray(pre["mean"], np.float32)
    std = np.asarray(pre["std"], np.float32)
    x = (canvas.astype(np.float32) * np.float32(pre["scale"]) - mean) / std
    if pre["layout"] == "NCHW":
        x = x.transpose(2, 0, 1)
    return x.astype(np.float32)


CASES = [
    # (source h, w, rgb?), contract fields
    ((37, 53, True), {"size": [16, 16], "resize": "bilinear", "fit": "stretch"}),
    ((37, 53, True), {"size": [16, 24], "resize": "bilinear", "fit": "center_crop"}),
    ((53, 37, True), {"size": [20, 20], "resize": "bilinear", "fit": "letterbox", "pad": [114]}),
    ((40, 90, True), {"size": [32, 32], "resize": "nearest", "fit": "letterbox", "pad": [1, 2, 3]}),
    ((40, 90, True), {"size": [64, 48], "resize": "bilinear", "fit": "center_crop"}),  # upscale
    ((9, 9, True), {"size": [31, 17], "resize": "nearest", "fit": "stretch"}),
    ((37, 53, True), {"size": [16, 16], "resize": "bilinear", "color": "BGR", "pad": [0]}),
    (
        (30, 70, True),
        {"size": [24, 24], "fit": "letterbox", "color": "BGR", "pad": [10, 20, 30]},
    ),
    ((37, 53, True), {"size": [12, 12], "color": "GRAY", "fit": "center_crop"}),
    ((37, 53, False), {"size": [12, 20], "color": "GRAY", "fit": "letterbox", "pad": [255]}),
    (
        (64, 48, True),
        {
            "size": [24, 24],
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
            "layout": "NCHW",
        },
    ),
]


@pytest.mark.parametrize(("source", "fields"), CASES, ids=str)
def test_an_independent_implementation_gives_the_same_tensor(
    tmp_path: Path, source: tuple, fields: dict
) -> None:
    height, width, rgb = source
    rng = np.random.default_rng(height * width)
    smooth = np.linspace(0, 255, height * width).reshape(height, width)
    noise = rng.integers(0, 256, (height, width, 3 if rgb else 1))
    pixels = np.clip(0.5 * smooth[..., None] + 0.5 * noise, 0, 255).astype(np.uint8)
    path = write_pnm(tmp_path / ("x.ppm" if rgb else "x.pgm"), pixels if rgb else pixels[..., 0])
    values = {"resize": "bilinear", "color": "RGB", **fields, "antialias": False}
    contract = Preprocessing.from_dict(values, "test")
    manifest_fields = contract.to_dict()  # what the bundle's manifest records
    ours = load_image(path, contract, tmp_path)
    theirs = reference(path, manifest_fields)
    assert ours.shape == theirs.shape
    # The same integer pixels; the formula in float32 on both sides.
    step = np.float32(manifest_fields["scale"]) / np.min(np.float32(manifest_fields["std"]))
    assert np.max(np.abs(ours - theirs)) <= 1e-5 * max(1.0, float(np.max(np.abs(theirs))))
    assert np.max(np.abs(ours - theirs)) < step  # below one pixel level, whatever the scale


def test_every_field_of_the_contract_has_its_meaning_written_down() -> None:
    fields = set(Preprocessing().to_dict()) - {"formula"}
    described = {name.strip() for key in FIELD_MEANINGS for name in key.split(",")}
    assert fields <= described, fields - described


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"antialias": False, "resize": "bicubic"}, "nearest and bilinear only"),
        ({"fit": "cover"}, "fit must be one of stretch, center_crop, letterbox"),
        ({"pad": [256]}, "pad values must be 0..255"),
        ({"pad": [1, 2]}, "pad needs 1 or 3 values"),
        ({"antialias": "no"}, "antialias must be true or false"),
        ({"exif_orientation": "rotate"}, "exif_orientation must be ignore or apply"),
    ],
)
def test_bad_contract_fields_are_named(fields: dict, problem: str) -> None:
    from edgepack.errors import CalibrationError

    with pytest.raises(CalibrationError, match=problem):
        Preprocessing.from_dict({"size": [4, 4], **fields}, "calibration.toml")


def test_exif_orientation_apply_rotates_as_the_tag_says(tmp_path: Path) -> None:
    from PIL import Image

    pixels = np.zeros((4, 6, 3), np.uint8)
    pixels[0, :, 0] = 255  # a red top row
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    image.save(tmp_path / "x.jpg", exif=exif, quality=100, subsampling=0)
    common = {"size": [4, 6], "resize": "nearest", "antialias": False, "scale": 1.0}
    ignored = load_image(tmp_path / "x.jpg", Preprocessing.from_dict(common, "t"), tmp_path)
    assert ignored[0, :, 0].min() > 200  # as stored: the red row on top
    applied = load_image(
        tmp_path / "x.jpg",
        Preprocessing.from_dict({**common, "size": [6, 4], "exif_orientation": "apply"}, "t"),
        tmp_path,
    )
    assert applied.shape == (6, 4, 3)
    assert applied[:, -1, 0].min() > 200  # displayed: the red row is now the right column


def test_group_names_the_samples_that_belong_together(tmp_path: Path) -> None:
    from edgepack.calib.contract import read_contract
    from edgepack.errors import CalibrationError

    (tmp_path / "calibration.toml").write_text("group = '^(\\d+)_'\n")
    contract = read_contract(tmp_path)
    assert contract is not None and contract.group == "^(\\d+)_"
    assert contract.group_of("03_090.png") == contract.group_of("03_270.png") == "03"
    assert contract.group_of("cover.png") == "cover.png"  # no match: a group of its own
    (tmp_path / "calibration.toml").write_text("group = 'page\\d'\n")  # no capture group
    assert read_contract(tmp_path).group_of("a/page7-b.png") == "page7"  # type: ignore[union-attr]
    (tmp_path / "calibration.toml").write_text("group = '(p)?age\\d'\n")  # optional group
    optional = read_contract(tmp_path)
    assert optional is not None and optional.group_of("page7.png") == "p"
    assert optional.group_of("age3.png") == "age3"  # the group took no part: the match
    (tmp_path / "calibration.toml").write_text("group = '(unclosed'\n")
    with pytest.raises(CalibrationError, match="'group' must be a regular expression"):
        read_contract(tmp_path)
