"""Image decoding and preprocessing with Pillow, exactly as the contract declares."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from edgepack.calib.contract import Preprocessing
from edgepack.calib.geometry import fit_image, place
from edgepack.errors import CalibrationError

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


def load_image(path: Path, contract: Preprocessing, root: Path) -> np.ndarray:
    """Decode, convert, resize, normalise and lay out one image as float32."""
    name = path.relative_to(root).as_posix()
    try:
        with Image.open(path) as image:
            image.load()
            pixels = _convert(image, contract)
    except Image.DecompressionBombError as exc:
        raise CalibrationError(f"{name}: image too large to decode safely ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise CalibrationError(f"{name}: unreadable image ({exc})") from None
    return preprocess_pixels(pixels, contract)


def _convert(image: Image.Image, contract: Preprocessing) -> np.ndarray:
    """Orientation, colour mode, fit and resize, channel order: 0..255 float32 (H, W, C)."""
    if contract.size is None:
        raise CalibrationError("image preprocessing has no size (bind the set to a model first)")
    if contract.exif_orientation == "apply":
        image = ImageOps.exif_transpose(image)
    mode = "L" if contract.color == "GRAY" else "RGB"
    converted = image.convert(mode)
    # the pad value in the image's own channel order (the contract gives it in its colour order)
    pad = contract.pad * contract.channels if len(contract.pad) == 1 else contract.pad
    pad = pad[::-1] if contract.color == "BGR" else pad
    if contract.antialias:
        pixels = _pillow_fit(converted, contract, pad)
    else:
        raw = np.asarray(converted, dtype=np.uint8)
        raw = raw[:, :, None] if raw.ndim == 2 else raw
        pixels = fit_image(raw, contract.size, contract.fit, contract.resize, pad)
    pixels = pixels.astype(np.float32)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if contract.color == "BGR":
        pixels = pixels[:, :, ::-1]
    return pixels


def _pillow_fit(image: Image.Image, contract: Preprocessing, pad: tuple[int, ...]) -> np.ndarray:
    """The fit's crop box resized with Pillow's filter, placed on a canvas of ``pad``."""
    assert contract.size is not None
    height, width = contract.size
    placement = place((image.height, image.width), (height, width), contract.fit)
    new_h, new_w = placement.size
    whole = placement.crop == (0, 0, image.width, image.height)
    if (new_w, new_h) != image.size or not whole:
        image = image.resize((new_w, new_h), _RESAMPLE[contract.resize], box=placement.crop)
    if (new_h, new_w) == (height, width):
        return np.asarray(image)
    fill: int | tuple[int, ...] = pad[0] if image.mode == "L" else tuple(pad)
    canvas = Image.new(image.mode, (width, height), fill)
    top, left = placement.offset
    canvas.paste(image, (left, top))
    return np.asarray(canvas)


def preprocess_pixels(pixels: np.ndarray, contract: Preprocessing) -> np.ndarray:
    """0..255 pixels (H, W, C) in the contract's colour order -> the model's input layout."""
    mean = np.asarray(contract.mean, dtype=np.float32)
    std = np.asarray(contract.std, dtype=np.float32)
    normalised = (pixels * np.float32(contract.scale) - mean) / std
    if contract.layout == "NCHW":
        normalised = normalised.transpose(2, 0, 1)
    return np.ascontiguousarray(normalised, dtype=np.float32)
