"""Image decoding and preprocessing with Pillow, exactly as the contract declares."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from edgepack.calib.contract import Preprocessing
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
    mode = "L" if contract.color == "GRAY" else "RGB"
    converted = image.convert(mode)
    if contract.size is None:
        raise CalibrationError("image preprocessing has no size (bind the set to a model first)")
    height, width = contract.size
    if converted.size != (width, height):
        converted = converted.resize((width, height), _RESAMPLE[contract.resize])
    pixels = np.asarray(converted, dtype=np.float32)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if contract.color == "BGR":
        pixels = pixels[:, :, ::-1]
    return pixels


def preprocess_pixels(pixels: np.ndarray, contract: Preprocessing) -> np.ndarray:
    """0..255 pixels (H, W, C) in the contract's colour order -> the model's input layout."""
    mean = np.asarray(contract.mean, dtype=np.float32)
    std = np.asarray(contract.std, dtype=np.float32)
    normalised = (pixels * np.float32(contract.scale) - mean) / std
    if contract.layout == "NCHW":
        normalised = normalised.transpose(2, 0, 1)
    return np.ascontiguousarray(normalised, dtype=np.float32)
