"""Train the shipped example: a small CNN on scikit-learn's bundled digits (no download).

Writes, from the repository root:

- ``examples/digits/digits.keras``: the float model (committed);
- ``calibration/digits/calib/<class>/*.png``: 400 calibration images from the training split;
- ``calibration/digits/eval/<class>/*.png``: 400 held-out evaluation images (never trained on);
- a ``calibration.toml`` in each folder (8x8 grey, pixel / 255, NHWC).

Run it again with ``python examples/digits/train.py`` (needs ``pip install -e .[dev]``).
Training is seeded; TensorFlow on another CPU may still give slightly different weights.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "examples" / "digits" / "digits.keras"
CALIBRATION = ROOT / "calibration" / "digits"
SEED = 0
EVAL_SIZE = 400
CALIB_SIZE = 400

CONTRACT = """\
# Digits: scikit-learn's 8x8 grey digits, stored as PNG (0..16 scaled to 0..255).
input = "image"

[preprocessing]
size = [8, 8]
resize = "nearest"
color = "GRAY"
scale = 0.00392156862745098   # 1/255: the model sees pixels in [0, 1]
mean = [0.0]
std = [1.0]
layout = "NHWC"
dtype = "float32"
"""


def split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    digits = load_digits()
    pixels = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    order = np.random.default_rng(SEED).permutation(len(pixels))
    eval_idx, train_idx = order[:EVAL_SIZE], order[EVAL_SIZE:]
    return pixels[train_idx], digits.target[train_idx], pixels[eval_idx], digits.target[eval_idx]


def make_model() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((8, 8, 1), name="image"),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1"),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv2"),
            keras.layers.MaxPooling2D(2, name="pool"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(128, activation="relu", name="dense"),
            keras.layers.Dropout(0.3, name="dropout"),
            keras.layers.Dense(10, activation="softmax", name="probabilities"),
        ],
        name="digits",
    )


def write_images(folder: Path, pixels: np.ndarray, labels: np.ndarray) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    for i, (image, label) in enumerate(zip(pixels, labels, strict=True)):
        target = folder / str(label) / f"{i:04d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, mode="L").save(target)
    (folder / "calibration.toml").write_text(CONTRACT)


def main() -> None:
    keras.utils.set_random_seed(SEED)
    train_x, train_y, eval_x, eval_y = split()
    model = make_model()
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    x = train_x[..., None].astype(np.float32) / 255.0
    model.fit(x, train_y, epochs=40, batch_size=32, verbose=0, validation_split=0.1)
    _, accuracy = model.evaluate(eval_x[..., None].astype(np.float32) / 255.0, eval_y, verbose=0)
    print(f"evaluation accuracy: {accuracy:.4f}")

    # Save the weights without optimizer state: the shipped file stays small.
    shipped = make_model()
    shipped.set_weights(model.get_weights())
    MODEL.parent.mkdir(parents=True, exist_ok=True)
    shipped.save(MODEL)
    print(f"wrote {MODEL.relative_to(ROOT)} ({MODEL.stat().st_size / 1024:.0f} KiB)")

    write_images(CALIBRATION / "calib", train_x[:CALIB_SIZE], train_y[:CALIB_SIZE])
    write_images(CALIBRATION / "eval", eval_x, eval_y)
    print(f"wrote {CALIB_SIZE} calibration and {EVAL_SIZE} evaluation images")


if __name__ == "__main__":
    main()
