"""A table-driven corpus of bad inputs, and a short fuzz run over the files users write.

The promise (README: Exit codes): bad input gets one line on stderr naming the problem and
the documented exit code (2 for a flag, config key, environment variable or profile; 3 for
a model, calibration or evaluation set; 5 for an existing bundle; 6 for a damaged bundle or
manifest), never a traceback, never a half-written bundle, and no input file or existing
bundle is changed. Every input is generated here, in the test's own folder.

Each case prepares its inputs in a private folder (the tiny Keras model of conftest as
``tiny.keras``, its 40 labelled 6 x 6 grey images as ``calib/``, and for bundle cases a copy
of one real ``tflite`` bundle as ``bundles/tiny-tflite``), then runs one command in-process.
The whole folder is hashed before and after: a failing command must leave every file as it
was and add nothing (no bundle, no hidden ``.*.partial`` folder, nothing outside ``--out``).
"""

from __future__ import annotations

import copy
import io
import itertools
import json
import math
import os
import shutil
import struct
import tempfile
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from PIL import Image

from edgepack.bundle import seal_manifest
from edgepack.errors import (
    EXIT_BUNDLE,
    EXIT_EXISTS,
    EXIT_INPUT,
    EXIT_INTERNAL,
    EXIT_USAGE,
)
from tests.conftest import GRAY_CONTRACT, CliResult, tiny_keras_model

Run = Callable[..., CliResult]

# Hypothesis keeps caches in ./.hypothesis (the repository): keep them in the temp folder
# instead, unless told where (the fuzz runs are derandomized and use no example database).
if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
    set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "edgepack-tests-hypothesis")

SEED = 0  # the build's --seed (the default)
NUM_CALIB = 8  # every build case calibrates on few samples: the conversion is quick
BUNDLE = "bundles/tiny-tflite"  # where bundle cases find their copy of the built bundle


# ---------------------------------------------------------------------------- the world


@dataclass
class World:
    """A case's private folder (the working directory of the command) and its tools."""

    root: Path
    monkeypatch: pytest.MonkeyPatch

    def path(self, rel: str) -> Path:
        return self.root / rel

    def text(self, rel: str) -> str:
        return (self.root / rel).read_text()

    def write(self, rel: str, content: str | bytes) -> str:
        target = self.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
        return rel

    def env(self, **values: str) -> None:
        for name, value in values.items():
            self.monkeypatch.setenv(name, value)

    def gray_set(self, rel: str, count: int = 20, classes: int = 0, size: int = 6) -> str:
        """``count`` grey PNGs named ``00.png``, ... (flat unless ``classes``)."""
        folder = self.root / rel
        rng = np.random.default_rng(7)
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            pixels = rng.integers(0, 256, size=(size, size), dtype=np.uint8)
            target = folder / (f"c{i % classes}" if classes else ".") / f"{i:02d}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels, mode="L").save(target)
        contract(self, rel)
        return rel

    def array_set(self, rel: str, arrays: dict[str, np.ndarray], name: str = "set") -> str:
        """One ``.npy`` (a single unnamed array) or ``.npz`` file and an array contract."""
        folder = self.root / rel
        folder.mkdir(parents=True, exist_ok=True)
        if list(arrays) == [""]:
            np.save(folder / f"{name}.npy", arrays[""])
        else:
            np.savez(folder / f"{name}.npz", **arrays)  # type: ignore[arg-type]
        self.write(f"{rel}/calibration.toml", ARRAY_CONTRACT)
        return rel

    def manifest(self, change: Callable[[dict[str, Any]], Any]) -> None:
        """Edit the bundle copy's manifest.json in place (``change`` mutates the dict)."""
        path = self.root / BUNDLE / "manifest.json"
        manifest = json.loads(path.read_text())
        change(manifest)
        # resealed, so the case reaches the check of the field it damages (an edit alone
        # fails the manifest's own sha256 first: see "manifest edited")
        path.write_text(json.dumps(seal_manifest(manifest), indent=2))

    def replace_manifest(self, document: Any) -> list[str]:
        """Another JSON document in place of the bundle copy's manifest; ``inspect`` args."""
        (self.root / BUNDLE / "manifest.json").write_text(json.dumps(document))
        return ["inspect", BUNDLE]


ARRAY_CONTRACT = 'input = "image"\n[preprocessing]\nlayout = "NHWC"\n'


def contract(w: World, rel: str, text: str | None = None, **preprocessing: Any) -> str:
    """``rel/calibration.toml``: the tiny model's grey contract, one key changed, or ``text``."""
    if text is None:
        text = GRAY_CONTRACT.format(input="image", h=6, w=6)
        for key, value in preprocessing.items():
            lines = [line for line in text.splitlines() if not line.startswith(f"{key} =")]
            text = "\n".join(lines) + f"\n{key} = {toml_value(value)}\n"
    w.write(f"{rel}/calibration.toml", text)
    return rel


def labelled(w: World, text: str) -> str:
    """The conftest calibration set (class folders 0, 1, 2) with another calibration.toml."""
    w.write("calib/calibration.toml", text)
    return "calib"


def build(
    *extra: str, model: str = "tiny.keras", calib: str = "calib", target: str = "tflite"
) -> list[str]:
    return ["build", model, "-t", target, "-c", calib, "-o", "out", "-n", str(NUM_CALIB), *extra]


def check(*extra: str, data: str = "calib") -> list[str]:
    return ["check", BUNDLE, "--data", data, *extra]


def split(count: int) -> tuple[list[int], list[int]]:
    """Which sample indices calibrate and which are held out (README: Selection: shuffled
    with the seed, the first --num-calib calibrate, the rest are held out)."""
    order = [int(i) for i in np.random.default_rng(SEED).permutation(count)]
    return order[:NUM_CALIB], order[NUM_CALIB:]


def in_calibration(count: int) -> int:
    """A sample that calibrates, but is neither the set's first sample nor the first
    calibration sample (both are loaded before the conversion starts)."""
    return next(i for i in split(count)[0][1:] if i != 0)


def held_out(count: int) -> int:
    """A held-out sample (loaded by the drift check, after the conversion)."""
    return next(i for i in split(count)[1] if i != 0)


# ---------------------------------------------------------------------------- bad files


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A PNG whose header says ``width`` x ``height`` grey pixels, with a tiny IDAT: Pillow
    refuses it as a decompression bomb (over twice ``Image.MAX_IMAGE_PIXELS``)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + png_chunk(b"IEND", b"")
    )


def png_bytes(size: int = 6) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(3).integers(0, 256, size=(size, size), dtype=np.uint8)
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def put_image(w: World, rel: str, count: int, index: int, data: bytes) -> str:
    """A flat set of ``count`` good images whose sample ``index`` is ``data``."""
    w.gray_set(rel, count)
    w.write(f"{rel}/{index:02d}.png", data)
    return rel


def put_npy(w: World, rel: str, count: int, index: int, value: float) -> str:
    """A ``.npy`` set of ``count`` samples whose sample ``index`` holds ``value`` once."""
    array = np.random.default_rng(5).random((count, 6, 6, 1), dtype=np.float32)
    array[index, 2, 3, 0] = value
    return w.array_set(rel, {"": array})


def samples(count: int = 20, shape: tuple[int, ...] = (6, 6, 1)) -> np.ndarray:
    return np.random.default_rng(5).random((count, *shape), dtype=np.float32)


def profile(w: World, text: str | bytes, name: str = "mine.toml") -> str:
    return w.write(name, text)


def tflite_profile(**header: str) -> str:
    """A user profile extending ``tflite``, with ``[profile]`` keys replaced by ``header``."""
    keys = {"name": "mine", "extends": "tflite", "description": "mine", **header}
    return "[profile]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in keys.items())


def stale_partial(w: World) -> str:
    """The hidden partial folder a build killed outright (SIGKILL) left beside its bundle:
    its lock file is left and nothing holds it; ten minutes old."""
    partial = w.path("out/.tiny-tflite.dead1.partial")
    partial.mkdir(parents=True)
    (partial / "model.tflite").write_bytes(b"half a model")
    w.write("out/.tiny-tflite.dead1.partial.lock", b"")
    old = time.time() - 600
    for path in (partial / "model.tflite", partial, w.path("out/.tiny-tflite.dead1.partial.lock")):
        os.utime(path, (old, old))
    return "out"


def existing_bundle(w: World) -> None:
    """A bundle already in ``out`` (the built one, copied), for the output cases."""
    shutil.copytree(w.path(BUNDLE), w.path("out/tiny-tflite"))


CORRUPT_ONNX = b"\x08\x07garbage that is no protobuf \xff\xfe"


# ---------------------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Case:
    """One bad input: how to make it, the command, and what must come out."""

    code: int
    needle: str  # must appear in the one stderr line
    make: Callable[[World], Sequence[str]]  # prepares the inputs, returns the CLI arguments
    bundle: bool = False  # needs the built bundle copied to BUNDLE
    gone: tuple[str, ...] = ()  # paths (with everything below) the command must remove


def case(
    id: str,
    code: int,
    needle: str,
    make: Callable[[World], Sequence[str]],
    *,
    xfail: str | None = None,
    bundle: bool = False,
    gone: tuple[str, ...] = (),
) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=xfail)] if xfail else []
    return pytest.param(Case(code, needle, make, bundle, gone), id=id, marks=marks)


CASES = [
    # ------------------------------------------------------------------ model files (3)
    case("model-missing", EXIT_INPUT, "no such model", lambda w: build(model="nope.keras")),
    case(
        "model-empty-keras",
        EXIT_INPUT,
        "empty.keras",
        lambda w: build(model=w.write("empty.keras", b"")),
    ),
    case(
        "model-truncated-keras",
        EXIT_INPUT,
        "cut.keras",
        lambda w: build(
            model=w.write("cut.keras", w.path("tiny.keras").read_bytes()[:1500]),
        ),
    ),
    case(
        "model-zip-without-keras-config",
        EXIT_INPUT,
        "hollow.keras",
        lambda w: build(model=w.write("hollow.keras", _zip({"readme.txt": b"hello"}))),
    ),
    case(
        "model-garbage-h5",
        EXIT_INPUT,
        "cut.h5",
        lambda w: build(model=w.write("cut.h5", b"\x89HDF\r\n\x1a\n" + b"\0" * 64)),
    ),
    case(
        "model-wrong-extension",
        EXIT_INPUT,
        "unknown model format '.pb2'",
        lambda w: build(model=w.write("tiny.pb2", w.path("tiny.keras").read_bytes())),
    ),
    case(
        "model-no-extension",
        EXIT_INPUT,
        "(no extension)",
        lambda w: build(model=w.write("tiny", w.path("tiny.keras").read_bytes())),
    ),
    case(
        "model-plain-folder",
        EXIT_INPUT,
        "not a SavedModel",
        lambda w: build(model=w.write("folder/notes.txt", "x") and "folder"),
    ),
    case(
        "model-folder-named-x.keras",
        EXIT_INPUT,
        "x.keras",
        lambda w: build(model=w.write("x.keras/model.weights.h5", b"\0") and "x.keras"),
    ),
    case(
        "model-savedmodel-with-garbage-pb",
        EXIT_INPUT,
        "sm",
        lambda w: build(model=w.write("sm/saved_model.pb", b"\x08garbage\xff") and "sm"),
    ),
    case(
        "model-corrupt-onnx",
        EXIT_INPUT,
        "not a loadable ONNX model",
        lambda w: build(model=w.write("bad.onnx", CORRUPT_ONNX)),
    ),
    case(
        "model-empty-onnx",
        EXIT_INPUT,
        "empty.onnx",
        lambda w: build(model=w.write("empty.onnx", b"")),
    ),
    case(
        "model-tflite-is-not-a-source",
        EXIT_INPUT,
        "deployment format",
        lambda w: build(model=w.write("tiny.tflite", b"TFL3")),
    ),
    # ------------------------------------------------------------------ calibration sets (3)
    case(
        "calib-missing-folder",
        EXIT_INPUT,
        "no such calibration",
        lambda w: build(calib="nowhere"),
    ),
    case(
        "calib-is-a-file",
        EXIT_INPUT,
        "got a file",
        lambda w: build(calib=w.write("calib.txt", "images")),
    ),
    case(
        "calib-empty-folder",
        EXIT_INPUT,
        "empty set",
        lambda w: build(calib=w.write("empty/calibration.toml", "") and "empty"),
    ),
    case(
        "calib-no-images",
        EXIT_INPUT,
        "empty set",
        lambda w: build(
            calib=w.write("docs/readme.txt", "x")
            and w.write("docs/pixels.csv", "1,2")
            and contract(w, "docs")
            and "docs"
        ),
    ),
    case(
        "calib-without-contract",
        EXIT_INPUT,
        "no calibration.toml",
        lambda w: build(calib=w.gray_set("bare") and _unlink(w, "bare/calibration.toml")),
    ),
    case(
        "image-unreadable-first",
        EXIT_INPUT,
        "00.png",
        lambda w: build(calib=put_image(w, "bad", 20, 0, b"this is no image")),
    ),
    case(
        "image-zero-bytes-first",
        EXIT_INPUT,
        "00.png",
        lambda w: build(calib=put_image(w, "zero", 20, 0, b"")),
    ),
    case(
        "image-zero-bytes-in-calibration-split",
        EXIT_INPUT,
        f"{in_calibration(20):02d}.png",
        lambda w: build(calib=put_image(w, "zero", 20, in_calibration(20), b"")),
    ),
    case(
        "image-truncated-png-in-calibration-split",
        EXIT_INPUT,
        f"{in_calibration(20):02d}.png",
        lambda w: build(
            calib=put_image(w, "cut", 20, in_calibration(20), png_bytes(64)[:120]),
        ),
    ),
    case(
        "image-truncated-png-held-out",
        EXIT_INPUT,
        f"{held_out(20):02d}.png",
        lambda w: build(calib=put_image(w, "cut", 20, held_out(20), png_bytes(64)[:120])),
    ),
    case(
        "image-20000x20000-first",
        EXIT_INPUT,
        "00.png",
        lambda w: build(calib=put_image(w, "big", 20, 0, png_bomb())),
    ),
    case(
        "image-20000x20000-in-calibration-split",
        EXIT_INPUT,
        f"{in_calibration(20):02d}.png",
        lambda w: build(calib=put_image(w, "big", 20, in_calibration(20), png_bomb())),
    ),
    case(
        "image-20000x20000-held-out",
        EXIT_INPUT,
        f"{held_out(20):02d}.png",
        lambda w: build(calib=put_image(w, "big", 20, held_out(20), png_bomb())),
    ),
    case(
        "calib-mixes-images-and-arrays",
        EXIT_INPUT,
        "mixes image files and array files",
        lambda w: build(calib=w.gray_set("mixed") and _npy(w, "mixed/x.npy", samples(2))),
    ),
    case(
        "npy-wrong-channel-count",
        EXIT_INPUT,
        "does not match model input",
        lambda w: build(calib=w.array_set("rgb", {"": samples(20, (6, 6, 3))})),
    ),
    case(
        "npy-nan-first",
        EXIT_INPUT,
        "NaN",
        lambda w: build(calib=put_npy(w, "nan", 20, 0, math.nan)),
    ),
    case(
        "npy-nan-in-calibration-split",
        EXIT_INPUT,
        f"set.npy[{in_calibration(20)}]",
        lambda w: build(calib=put_npy(w, "nan", 20, in_calibration(20), math.nan)),
    ),
    case(
        "npy-inf-in-calibration-split",
        EXIT_INPUT,
        f"set.npy[{in_calibration(20)}]",
        lambda w: build(calib=put_npy(w, "inf", 20, in_calibration(20), math.inf)),
    ),
    case(
        "npy-inf-held-out",
        EXIT_INPUT,
        f"set.npy[{held_out(20)}]",
        lambda w: build(calib=put_npy(w, "inf", 20, held_out(20), -math.inf)),
    ),
    case(
        "npy-scalar",
        EXIT_INPUT,
        "scalar",
        lambda w: build(calib=w.array_set("scalar", {"": np.float32(1.0)})),  # type: ignore[dict-item]
    ),
    case(
        "npy-garbage-bytes",
        EXIT_INPUT,
        "unreadable array file",
        lambda w: build(calib=w.write("junk/calibration.toml", ARRAY_CONTRACT) and _junk_npy(w)),
    ),
    case(
        "npy-of-strings",
        EXIT_INPUT,
        "numeric",
        lambda w: build(calib=w.array_set("text", {"": np.full((20, 6, 6, 1), "ab")})),
    ),
    case(
        "npz-wrong-keys",
        EXIT_INPUT,
        "do not name the model inputs",
        lambda w: build(calib=w.array_set("npz", {"pixels": samples(), "other": samples()})),
    ),
    case(
        "npz-only-labels",
        EXIT_INPUT,
        "holds no input arrays",
        lambda w: build(calib=w.array_set("npz", {"labels": np.zeros(20, np.int64)})),
    ),
    case(
        "npz-negative-labels",
        EXIT_INPUT,
        "must not be negative",
        lambda w: build(
            calib=w.array_set("npz", {"image": samples(), "labels": np.full(20, -1, np.int64)})
        ),
    ),
    case(
        "npz-arrays-of-different-lengths",
        EXIT_INPUT,
        "non-empty first axis",
        lambda w: build(calib=w.array_set("npz", {"image": samples(20), "mask": samples(3)})),
    ),
    case(
        "labels-csv-without-header",
        EXIT_INPUT,
        "file,label",
        lambda w: build(
            calib=w.gray_set("csv") and w.write("csv/labels.csv", "00.png,a\n") and "csv"
        ),
    ),
    case(
        "labels-csv-missing-a-file",
        EXIT_INPUT,
        "no label for",
        lambda w: build(
            calib=w.gray_set("csv")
            and w.write("csv/labels.csv", "file,label\n00.png,a\n")
            and "csv"
        ),
    ),
    case(
        "class-folder-name-with-newline",
        EXIT_INPUT,
        "label",
        lambda w: build(calib=_rename(w, "calib/2", "calib/two\nlines") and "calib"),
    ),
    case(
        "toml-label-name-with-newline",
        EXIT_INPUT,
        "label",
        lambda w: build(
            calib=labelled(w, _gray() + '[labels]\nnames = ["0", "1", "2", "x\\ny"]\n')
        ),
    ),
    case(
        "toml-labels-miss-a-class-folder",
        EXIT_INPUT,
        "not in [labels] names",
        lambda w: build(calib=labelled(w, _gray() + '[labels]\nnames = ["0", "1"]\n') and "calib"),
    ),
    case(
        "toml-labels-not-distinct",
        EXIT_INPUT,
        "distinct",
        lambda w: build(calib=labelled(w, _gray() + '[labels]\nnames = ["0", "1", "2", "1"]\n')),
    ),
    case(
        "toml-unknown-top-key",
        EXIT_INPUT,
        "unknown key",
        lambda w: build(calib=labelled(w, "crop = true\n" + _gray()) and "calib"),
    ),
    case(
        "toml-unknown-preprocessing-key",
        EXIT_INPUT,
        "unknown preprocessing key",
        lambda w: build(calib=contract(w, "calib", crop="center")),
    ),
    case(
        "toml-unknown-labels-key",
        EXIT_INPUT,
        "[labels]",
        lambda w: build(
            calib=labelled(w, _gray() + '[labels]\nnames = ["0", "1", "2"]\norder = 1\n')
        ),
    ),
    case(
        "toml-preprocessing-is-a-string",
        EXIT_INPUT,
        "preprocessing",
        lambda w: build(calib=labelled(w, 'input = "image"\npreprocessing = "gray"\n')),
    ),
    case(
        "toml-labels-is-a-number",
        EXIT_INPUT,
        "labels",
        lambda w: build(calib=labelled(w, "labels = 5\n" + _gray())),
    ),
    case(
        "toml-input-is-a-number",
        EXIT_INPUT,
        "'input' must be a string",
        lambda w: build(calib=labelled(w, _gray().replace('"image"', "5"))),
    ),
    case(
        "toml-input-not-in-model",
        EXIT_INPUT,
        "'pixels' is not an input of the model",
        lambda w: build(calib=labelled(w, _gray().replace('"image"', '"pixels"'))),
    ),
    case(
        "toml-size-zero",
        EXIT_INPUT,
        "size",
        lambda w: build(calib=contract(w, "calib", size=[0, 5])),
    ),
    case(
        "toml-size-one-value",
        EXIT_INPUT,
        "size",
        lambda w: build(calib=contract(w, "calib", size=[6])),
    ),
    case(
        "toml-size-fractional",
        EXIT_INPUT,
        "size",
        lambda w: build(calib=contract(w, "calib", size=[6.5, 6.5])),
    ),
    case(
        "toml-size-mismatches-model",
        EXIT_INPUT,
        "does not match model input",
        lambda w: build(calib=contract(w, "calib", size=[8, 8])),
    ),
    case(
        "toml-std-zero", EXIT_INPUT, "std", lambda w: build(calib=contract(w, "calib", std=[0.0]))
    ),
    case(
        "toml-bad-resize",
        EXIT_INPUT,
        "resize must be one of",
        lambda w: build(calib=contract(w, "calib", resize="cubic-ish")),
    ),
    case(
        "toml-bad-color",
        EXIT_INPUT,
        "color must be one of",
        lambda w: build(calib=contract(w, "calib", color="CMYK")),
    ),
    case(
        "toml-mean-wrong-length",
        EXIT_INPUT,
        "mean needs 1 or 1 values",
        lambda w: build(calib=contract(w, "calib", mean=[0.1, 0.2, 0.3])),
    ),
    case(
        "toml-bad-layout",
        EXIT_INPUT,
        "layout",
        lambda w: build(calib=contract(w, "calib", layout="HWC")),
    ),
    case(
        "toml-bad-dtype",
        EXIT_INPUT,
        "dtype",
        lambda w: build(calib=contract(w, "calib", dtype="float16")),
    ),
    case(
        "toml-scale-is-text",
        EXIT_INPUT,
        "invalid preprocessing",
        lambda w: build(calib=contract(w, "calib", scale="big")),
    ),
    case(
        "toml-invalid",
        EXIT_INPUT,
        "invalid TOML",
        lambda w: build(calib=labelled(w, "[preprocessing\nsize = [6, 6]\n")),
    ),
    case(
        "toml-not-utf8",
        EXIT_INPUT,
        "calibration.toml",
        lambda w: build(
            calib=w.write("calib/calibration.toml", b'input = "\xff\xfe"\n') and "calib"
        ),
    ),
    case(
        "toml-labels-names-a-string",
        EXIT_INPUT,
        "names",
        lambda w: build(calib=labelled(w, _gray() + '[labels]\nnames = "0 1 2"\n')),
    ),
    # ------------------------------------------------------------------ evaluation sets (3)
    case(
        "eval-missing-folder",
        EXIT_INPUT,
        "nowhere",
        lambda w: build("--eval", "nowhere"),
    ),
    case(
        "eval-other-preprocessing",
        EXIT_INPUT,
        "preprocessing differs",
        lambda w: build(
            "--eval", w.gray_set("ev") and contract(w, "ev", resize="bilinear") and "ev"
        ),
    ),
    case(
        "eval-unreadable-image",
        EXIT_INPUT,
        "03.png",
        lambda w: build("--eval", put_image(w, "ev", 10, 3, b"no image here")),
    ),
    # ------------------------------------------------------------------ options (2)
    case("num-calib-0", EXIT_USAGE, "num_samples", lambda w: build("--num-calib", "0")),
    case("num-calib-negative", EXIT_USAGE, "num_samples", lambda w: build("--num-calib", "-1")),
    case("num-calib-abc", EXIT_USAGE, "'abc' is not a valid integer", lambda w: build("-n", "abc")),
    case("seed-negative", EXIT_USAGE, "seed", lambda w: build("--seed", "-1")),
    case("seed-abc", EXIT_USAGE, "--seed", lambda w: build("--seed", "abc")),
    case("min-sqnr-nan", EXIT_USAGE, "finite", lambda w: build("--min-sqnr", "nan")),
    case("min-sqnr-inf", EXIT_USAGE, "finite", lambda w: build("--min-sqnr", "inf")),
    case("max-drop-150%", EXIT_USAGE, "max_drop", lambda w: build("--max-drop", "150%")),
    case("max-drop-abc", EXIT_USAGE, "max_drop", lambda w: build("--max-drop", "abc")),
    case(
        "min-agreement-negative",
        EXIT_USAGE,
        "min_agreement",
        lambda w: build("--min-agreement", "-5%"),
    ),
    case("min-recall-2", EXIT_USAGE, "min_recall", lambda w: build("--min-recall", "2")),
    case("drift-samples-0", EXIT_USAGE, "drift.samples", lambda w: build("--drift-samples", "0")),
    case("tune-seconds-nan", EXIT_USAGE, "max_seconds", lambda w: build("--tune-seconds", "nan")),
    case(
        "calib-method-unknown",
        EXIT_USAGE,
        "'magic' is not one of 'minmax', 'percentile', 'entropy'",
        lambda w: build("--calib-method", "magic"),
    ),
    case("path-unknown", EXIT_USAGE, "warp", lambda w: build("--path", "warp")),
    case("target-unknown", EXIT_USAGE, "unknown target 'tpu'", lambda w: build(target="tpu")),
    case(
        "out-is-a-file",
        EXIT_USAGE,
        "not a folder",
        lambda w: [*build(), "--out", w.write("out.txt", "not a folder")],
    ),
    case(
        "out-below-a-file",
        EXIT_USAGE,
        "not a folder",
        lambda w: [*build(), "--out", w.write("file.txt", "x") + "/bundles"],
    ),
    case(
        "calib-option-missing",
        EXIT_USAGE,
        "--calib",
        lambda w: ["build", "tiny.keras", "-t", "tflite"],
    ),
    case("unknown-flag", EXIT_USAGE, "--frobnicate", lambda w: build("--frobnicate")),
    # ------------------------------------------------------------------ project config (2)
    case(
        "config-unknown-key",
        EXIT_USAGE,
        "unknown option 'colour'",
        lambda w: build() if w.write("edgepack.toml", 'colour = "red"\n') else [],
    ),
    case(
        "config-wrong-type",
        EXIT_USAGE,
        "calibration.num_samples",
        lambda w: (
            build() if w.write("edgepack.toml", '[calibration]\nnum_samples = "many"\n') else []
        ),
    ),
    case(
        "config-invalid-toml",
        EXIT_USAGE,
        "invalid TOML",
        lambda w: build() if w.write("edgepack.toml", "[drift\nmax_drop = 1%\n") else [],
    ),
    case(
        "config-unexpected-nested-table",
        EXIT_USAGE,
        "unexpected table",
        lambda w: build() if w.write("edgepack.toml", "[drift.extra]\nkey = 1\n") else [],
    ),
    case(
        "config-targets-not-a-table",
        EXIT_USAGE,
        "targets",
        lambda w: build() if w.write("edgepack.toml", "targets = 5\n") else [],
    ),
    case(
        "config-target-setting-bad-value",
        EXIT_USAGE,
        "io_dtype",
        lambda w: (
            build()
            if w.write("edgepack.toml", '[targets.tflite.settings]\nio_dtype = "int4"\n')
            else []
        ),
    ),
    case(
        "config-tune-not-a-bool",
        EXIT_USAGE,
        "tune.enabled",
        lambda w: build() if w.write("edgepack.toml", 'tune = "sometimes"\n') else [],
    ),
    case(
        "config-not-utf8",
        EXIT_USAGE,
        "edgepack.toml",
        lambda w: build() if w.write("edgepack.toml", b'out = "\xff\xfe"\n') else [],
    ),
    case(
        "pyproject-unknown-key",
        EXIT_USAGE,
        "unknown option 'colour'",
        lambda w: build() if w.write("pyproject.toml", '[tool.edgepack]\ncolour = "red"\n') else [],
    ),
    case(
        "pyproject-wrong-type",
        EXIT_USAGE,
        "force",
        lambda w: (
            build() if w.write("pyproject.toml", '[tool.edgepack]\nforce = "perhaps"\n') else []
        ),
    ),
    case(
        "pyproject-invalid-toml",
        EXIT_USAGE,
        "invalid TOML",
        lambda w: build() if w.write("pyproject.toml", "[tool.edgepack\nout = 'x'\n") else [],
    ),
    case(
        "config-eval-folder-missing",
        EXIT_INPUT,
        "no such calibration or evaluation folder",
        lambda w: build() if w.write("edgepack.toml", '[drift]\neval = "nowhere"\n') else [],
    ),
    # ------------------------------------------------------------------ environment (2)
    case("env-unknown", EXIT_USAGE, "EDGEPACK_UNKNOWN", lambda w: _env(w, EDGEPACK_UNKNOWN="1")),
    case("env-seed-abc", EXIT_USAGE, "EDGEPACK_SEED:", lambda w: _env(w, EDGEPACK_SEED="abc")),
    case(
        "env-num-calib-0",
        EXIT_USAGE,
        "EDGEPACK_NUM_CALIB:",
        lambda w: _env(w, EDGEPACK_NUM_CALIB="0", args=build()[:-2]),
    ),
    case(
        "env-max-drop-2", EXIT_USAGE, "EDGEPACK_MAX_DROP:", lambda w: _env(w, EDGEPACK_MAX_DROP="2")
    ),
    case(
        "env-min-sqnr-nan",
        EXIT_USAGE,
        "EDGEPACK_MIN_SQNR:",
        lambda w: _env(w, EDGEPACK_MIN_SQNR="nan"),
    ),
    case(
        "env-force-perhaps",
        EXIT_USAGE,
        "EDGEPACK_FORCE:",
        lambda w: _env(w, EDGEPACK_FORCE="perhaps"),
    ),
    case("env-tune-maybe", EXIT_USAGE, "EDGEPACK_TUNE:", lambda w: _env(w, EDGEPACK_TUNE="maybe")),
    case(
        "env-tune-seconds-negative",
        EXIT_USAGE,
        "EDGEPACK_TUNE_SECONDS:",
        lambda w: _env(w, EDGEPACK_TUNE_SECONDS="-1"),
    ),
    case(
        "env-drift-samples-text",
        EXIT_USAGE,
        "EDGEPACK_DRIFT_SAMPLES:",
        lambda w: _env(w, EDGEPACK_DRIFT_SAMPLES="lots"),
    ),
    case("env-paths-unknown", EXIT_USAGE, "warp", lambda w: _env(w, EDGEPACK_PATHS="warp")),
    case(
        "env-source-date-epoch-text",
        EXIT_USAGE,
        "SOURCE_DATE_EPOCH",
        lambda w: _env(w, SOURCE_DATE_EPOCH="yesterday"),
    ),
    case(
        "env-out-is-a-file",
        EXIT_USAGE,
        "not a folder",
        lambda w: _env(
            w,
            EDGEPACK_OUT=w.write("out.txt", "x"),
            args=["build", "tiny.keras", "-t", "tflite", "-c", "calib"],
        ),
    ),
    case("env-eval-missing", EXIT_INPUT, "nowhere", lambda w: _env(w, EDGEPACK_EVAL="nowhere")),
    case(
        "env-unknown-on-check",
        EXIT_USAGE,
        "EDGEPACK_UNKNOWN",
        lambda w: _env(w, EDGEPACK_UNKNOWN="1", args=check()),
        bundle=True,
    ),
    # ------------------------------------------------------------------ target profiles (2)
    case(
        "profile-file-missing",
        EXIT_USAGE,
        "not found",
        lambda w: build(target="nowhere.toml"),
    ),
    case(
        "profile-unknown-key",
        EXIT_USAGE,
        "unknown key",
        lambda w: build(target=profile(w, tflite_profile(colour="red"))),
    ),
    case(
        "profile-unknown-table",
        EXIT_USAGE,
        "unknown table",
        lambda w: build(target=profile(w, tflite_profile() + "[extras]\nx = 1\n")),
    ),
    case(
        "profile-invalid-toml",
        EXIT_USAGE,
        "invalid TOML",
        lambda w: build(target=profile(w, "[profile\nname = 'x'\n")),
    ),
    case(
        "profile-not-utf8",
        EXIT_USAGE,
        "mine.toml",
        lambda w: build(target=profile(w, tflite_profile(description="caf\xe9").encode("latin-1"))),
    ),
    case(
        "profile-name-escapes-out",
        EXIT_USAGE,
        "name",
        lambda w: build(target=profile(w, tflite_profile(name="x/../../ESCAPED"))),
    ),
    case(
        "profile-name-with-newline",
        EXIT_USAGE,
        "name",
        lambda w: build(target=profile(w, tflite_profile(name="two\nlines"))),
    ),
    case(
        "profile-name-with-spaces",
        EXIT_USAGE,
        "name",
        lambda w: build(target=profile(w, tflite_profile(name="my phone"))),
    ),
    case(
        "profile-table-is-a-string",
        EXIT_USAGE,
        "must be a table",
        lambda w: build(target=profile(w, 'profile = "tflite"\n')),
    ),
    case(
        "profile-without-backend",
        EXIT_USAGE,
        "'backend'",
        lambda w: build(target=profile(w, '[profile]\nname = "mine"\ndescription = "d"\n')),
    ),
    case(
        "profile-unknown-backend",
        EXIT_USAGE,
        "no backend 'tpu'",
        lambda w: build(
            target=profile(w, '[profile]\nname = "m"\nbackend = "tpu"\ndescription = "d"\n')
        ),
    ),
    case(
        "profile-extends-unknown",
        EXIT_USAGE,
        "extends",
        lambda w: build(target=profile(w, tflite_profile(extends="tflite-ultra"))),
    ),
    case(
        "profile-unknown-setting",
        EXIT_USAGE,
        "unknown setting",
        lambda w: build(target=profile(w, tflite_profile() + "[settings]\ncolour = 1\n")),
    ),
    case(
        "profile-drift-wrong-type",
        EXIT_USAGE,
        "min_sqnr",
        lambda w: build(target=profile(w, tflite_profile() + '[drift]\nmin_sqnr = "loud"\n')),
    ),
    case(
        "profile-num-samples-0",
        EXIT_USAGE,
        "num_samples",
        lambda w: build(target=profile(w, tflite_profile() + "[calibration]\nnum_samples = 0\n")),
    ),
    case(
        "profile-firmware-note-missing",
        EXIT_USAGE,
        "firmware_note",
        lambda w: build(target=profile(w, tflite_profile(firmware_note="notes/none.md"))),
    ),
    case(
        "profile-firmware-note-missing-second-target",
        EXIT_USAGE,
        "firmware_note",
        lambda w: build("-t", profile(w, tflite_profile(firmware_note="notes/none.md"))),
    ),
    # ------------------------------------------------------------------ output folders
    case(
        "bundle-exists-without-force",
        EXIT_EXISTS,
        "--force",
        lambda w: (existing_bundle(w), build())[1],
        bundle=True,
    ),
    case(
        "force-build-with-bad-calibration-keeps-bundle",
        EXIT_INPUT,
        "empty set",
        lambda w: (
            existing_bundle(w),
            build("--force", calib=w.write("e/calibration.toml", "") and "e"),
        )[1],
        bundle=True,
    ),
    case(
        "force-build-nan-in-calibration-split-keeps-bundle",
        EXIT_INPUT,
        f"set.npy[{in_calibration(20)}]",
        lambda w: (
            existing_bundle(w),
            build("--force", calib=put_npy(w, "nan", 20, in_calibration(20), math.nan)),
        )[1],
        bundle=True,
    ),
    case(
        "force-build-bad-held-out-image-keeps-bundle",
        EXIT_INPUT,
        f"{held_out(20):02d}.png",
        lambda w: (
            existing_bundle(w),
            build("--force", calib=put_image(w, "big", 20, held_out(20), png_bomb())),
        )[1],
        bundle=True,
    ),
    case(
        "stale-partial-removed-by-failing-build",
        EXIT_INPUT,
        f"{held_out(20):02d}.png",
        lambda w: (stale_partial(w), build(calib=put_image(w, "cut", 20, held_out(20), b"")))[1],
        gone=("out/.tiny-tflite.dead1.partial", "out/.tiny-tflite.dead1.partial.lock"),
    ),
    # ------------------------------------------------------------------ bundles: inspect (6)
    case("inspect-no-such-bundle", EXIT_BUNDLE, "no such bundle", lambda w: ["inspect", "nowhere"]),
    case(
        "inspect-bundle-is-a-file",
        EXIT_BUNDLE,
        "bundle.txt",
        lambda w: ["inspect", w.write("bundle.txt", "{}")],
    ),
    case(
        "inspect-no-manifest",
        EXIT_BUNDLE,
        "no manifest.json",
        lambda w: _unlink(w, f"{BUNDLE}/manifest.json") and ["inspect", BUNDLE],
        bundle=True,
    ),
    case(
        "inspect-manifest-not-json",
        EXIT_BUNDLE,
        "not valid JSON",
        lambda w: w.write(f"{BUNDLE}/manifest.json", "{'target': ") and ["inspect", BUNDLE],
        bundle=True,
    ),
    case(
        "inspect-manifest-not-utf8",
        EXIT_BUNDLE,
        "manifest.json",
        lambda w: w.write(f"{BUNDLE}/manifest.json", b'{"a": "\xff"}') and ["inspect", BUNDLE],
        bundle=True,
    ),
    case(
        "manifest-edited",
        EXIT_BUNDLE,
        "manifest_sha256 differs",
        lambda w: (
            w.write(
                f"{BUNDLE}/manifest.json",
                w.text(f"{BUNDLE}/manifest.json").replace('"labels": [', '"labels": ["extra", '),
            )
            and ["inspect", BUNDLE]
        ),
        bundle=True,
    ),
    case(
        "inspect-manifest-a-list",
        EXIT_BUNDLE,
        "not a manifest object",
        lambda w: w.replace_manifest([{"schema_version": 1}]),
        bundle=True,
    ),
    case(
        "inspect-manifest-empty-object",
        EXIT_BUNDLE,
        "no manifest_sha256",
        lambda w: w.replace_manifest({}),
        bundle=True,
    ),
    case(
        "inspect-no-target-backend",
        EXIT_BUNDLE,
        "target.backend",
        lambda w: _manifest(w, lambda m: m["target"].pop("backend")),
        bundle=True,
    ),
    case(
        "inspect-inputs-a-string",
        EXIT_BUNDLE,
        "inputs",
        lambda w: _manifest(w, lambda m: m.update(inputs="image")),
        bundle=True,
    ),
    case(
        "inspect-outputs-entry-a-number",
        EXIT_BUNDLE,
        "outputs",
        lambda w: _manifest(w, lambda m: m.update(outputs=[1])),
        bundle=True,
    ),
    case(  # found by the fuzz run: check crashed transposing with no axes
        "check-output-transpose-empty",
        EXIT_BUNDLE,
        "outputs[0].transpose must order the 2 axes of its shape",
        lambda w: _manifest(w, lambda m: m["outputs"][0].update(transpose=[]), args=check()),
        bundle=True,
    ),
    case(
        "inspect-compat-malformed",
        EXIT_BUNDLE,
        "compat is malformed",
        lambda w: _manifest(w, lambda m: m.update(compat={"devices": [{}], "require": []})),
        bundle=True,
    ),
    case(
        "inspect-schema-version-99",
        EXIT_BUNDLE,
        "schema_version 99",
        lambda w: _manifest(w, lambda m: m.update(schema_version=99)),
        bundle=True,
    ),
    case(
        "inspect-labels-a-string",
        EXIT_BUNDLE,
        "labels",
        lambda w: _manifest(w, lambda m: m.update(labels="0,1,2")),
        bundle=True,
    ),
    case(
        "inspect-no-model-size",
        EXIT_BUNDLE,
        "size_bytes",
        lambda w: _manifest(w, lambda m: m["model"].pop("size_bytes")),
        bundle=True,
    ),
    case(
        "inspect-input-without-name",
        EXIT_BUNDLE,
        "name",
        lambda w: _manifest(w, lambda m: m["inputs"][0].pop("name")),
        bundle=True,
    ),
    case(
        "inspect-quantization-without-scale",
        EXIT_BUNDLE,
        "scale",
        lambda w: _manifest(w, lambda m: m["inputs"][0]["quantization"].pop("scale")),
        bundle=True,
    ),
    case(
        "inspect-drift-summary-empty",
        EXIT_BUNDLE,
        "drift",
        lambda w: _manifest(w, lambda m: m.update(drift={})),
        bundle=True,
    ),
    # ------------------------------------------------------------------ bundles: check (6)
    case(
        "check-no-manifest",
        EXIT_BUNDLE,
        "no manifest.json",
        lambda w: _unlink(w, f"{BUNDLE}/manifest.json") and check(),
        bundle=True,
    ),
    case(
        "check-manifest-a-list",
        EXIT_BUNDLE,
        "not a manifest object",
        lambda w: w.replace_manifest([{"schema_version": 1}]) and check(),
        bundle=True,
    ),
    case(
        "check-no-target-backend",
        EXIT_BUNDLE,
        "target.backend",
        lambda w: _manifest(w, lambda m: m["target"].pop("backend"), check()),
        bundle=True,
    ),
    case(
        "check-unknown-backend",
        EXIT_BUNDLE,
        "tpu",
        lambda w: _manifest(w, lambda m: m["target"].update(backend="tpu"), check()),
        bundle=True,
    ),
    case(
        "check-inputs-a-string",
        EXIT_BUNDLE,
        "inputs",
        lambda w: _manifest(w, lambda m: m.update(inputs="image"), check()),
        bundle=True,
    ),
    case(
        "check-schema-version-99",
        EXIT_BUNDLE,
        "schema_version 99",
        lambda w: _manifest(w, lambda m: m.update(schema_version=99), check()),
        bundle=True,
    ),
    case(
        "check-model-file-missing",
        EXIT_BUNDLE,
        "model.tflite is missing",
        lambda w: _unlink(w, f"{BUNDLE}/model.tflite") and check(),
        bundle=True,
    ),
    case(
        "check-model-file-altered",
        EXIT_BUNDLE,
        "sha256 differs",
        lambda w: _append(w, f"{BUNDLE}/model.tflite", b"\0") and check(),
        bundle=True,
    ),
    case(
        "check-labels-txt-altered",
        EXIT_BUNDLE,
        "labels.txt",
        lambda w: w.write(f"{BUNDLE}/labels.txt", "2\n1\n0\n") and check(),
        bundle=True,
    ),
    case(
        "check-drift-json-altered",
        EXIT_BUNDLE,
        "drift.json",
        lambda w: _append(w, f"{BUNDLE}/drift.json", b" ") and check(),
        bundle=True,
    ),
    case(
        "check-firmware-note-missing",
        EXIT_BUNDLE,
        "firmware-note.md",
        lambda w: _unlink(w, f"{BUNDLE}/firmware-note.md") and check(),
        bundle=True,
    ),
    case(
        "check-model-file-outside-bundle",
        EXIT_BUNDLE,
        "outside the bundle",
        lambda w: _outside(w) and check(),
        bundle=True,
    ),
    case(
        "check-model-file-absolute",
        EXIT_BUNDLE,
        "outside the bundle",
        lambda w: _manifest(
            w,
            lambda m: m["model"].update(file=str(w.path(f"{BUNDLE}/model.tflite").resolve())),
            check(),
        ),
        bundle=True,
    ),
    case(
        "check-no-model-sha256",
        EXIT_BUNDLE,
        "sha256",
        lambda w: _manifest(w, lambda m: m["model"].pop("sha256"), check()),
        bundle=True,
    ),
    case(
        "check-files-a-list",
        EXIT_BUNDLE,
        "files",
        lambda w: _manifest(w, lambda m: m.update(files=["model.tflite"]), check()),
        bundle=True,
    ),
    case(
        "check-input-without-source-name",
        EXIT_BUNDLE,
        "source_name",
        lambda w: _manifest(w, lambda m: m["inputs"][0].pop("source_name"), check()),
        bundle=True,
    ),
    case(
        "check-quantization-without-scale",
        EXIT_BUNDLE,
        "scale",
        lambda w: _manifest(w, lambda m: m["inputs"][0]["quantization"].pop("scale"), check()),
        bundle=True,
    ),
    case(
        "check-input-shape-differs-from-model",
        EXIT_BUNDLE,
        "shape",
        lambda w: _manifest(w, lambda m: m["inputs"][0].update(shape=[1, 7, 7, 1]), check()),
        bundle=True,
    ),
    case(
        "check-profile-drift-wrong-type",
        EXIT_BUNDLE,
        "min_sqnr",
        lambda w: _manifest(w, lambda m: m["target"].update(drift={"min_sqnr": "loud"}), check()),
        bundle=True,
    ),
    case(
        "check-profile-drift-a-list",
        EXIT_BUNDLE,
        "drift",
        lambda w: _manifest(w, lambda m: m["target"].update(drift=[1]), check()),
        bundle=True,
    ),
    case(
        "check-preprocessing-bad-resize",
        EXIT_BUNDLE,
        "resize",
        lambda w: _manifest(w, lambda m: m["preprocessing"].update(resize="warp"), check()),
        bundle=True,
    ),
    case(
        "check-source-without-path",
        EXIT_BUNDLE,
        "source",
        lambda w: _manifest(w, lambda m: m["source"].pop("path"), check()),
        bundle=True,
    ),
    case(
        "check-source-model-missing",
        EXIT_BUNDLE,
        "--model",
        lambda w: _unlink(w, "tiny.keras") and check(),
        bundle=True,
    ),
    case(
        "check-source-model-changed",
        EXIT_BUNDLE,
        "sha256 differs",
        lambda w: _other_model(w) and check("--model", "other.keras"),
        bundle=True,
    ),
    case(
        "check-model-option-missing",
        EXIT_INPUT,
        "no such model",
        lambda w: check("--model", "nowhere.keras"),
        bundle=True,
    ),
    case(
        "check-data-missing",
        EXIT_INPUT,
        "no such calibration or evaluation folder",
        lambda w: check(data="nowhere"),
        bundle=True,
    ),
    case(
        "check-data-empty",
        EXIT_INPUT,
        "empty set",
        lambda w: check(data=w.write("empty/notes.txt", "x") and "empty"),
        bundle=True,
    ),
    case(
        "check-data-unreadable-image",
        EXIT_INPUT,
        "00.png",
        lambda w: check(
            data=put_image(w, "ev", 10, 0, b"not an image") and _unlink(w, "ev/calibration.toml")
        ),
        bundle=True,
    ),
    case(
        "check-data-labels-not-in-bundle",
        EXIT_INPUT,
        "labels",
        lambda w: check(data=w.gray_set("ev", 9, classes=3) and _unlink(w, "ev/calibration.toml")),
        bundle=True,
    ),
    case(
        "check-data-own-contract-labels-not-in-bundle",
        EXIT_INPUT,
        "labels",
        lambda w: check(data=w.gray_set("ev", 9, classes=3)),
        bundle=True,
    ),
    case(
        "check-max-drop-150%",
        EXIT_USAGE,
        "max_drop",
        lambda w: check("--max-drop", "150%"),
        bundle=True,
    ),
    case(
        "check-samples-0",
        EXIT_USAGE,
        "drift.samples",
        lambda w: check("--samples", "0"),
        bundle=True,
    ),
    case(
        "check-runtime-unknown",
        EXIT_USAGE,
        "--runtime",
        lambda w: check("--runtime", "quantum"),
        bundle=True,
    ),
]


# ---------------------------------------------------------------------------- small makers


def _gray() -> str:
    return GRAY_CONTRACT.format(input="image", h=6, w=6)


def _zip(files: dict[str, bytes]) -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _unlink(w: World, rel: str) -> str:
    w.path(rel).unlink()
    return rel.split("/", maxsplit=1)[0]


def _append(w: World, rel: str, data: bytes) -> str:
    with w.path(rel).open("ab") as handle:
        handle.write(data)
    return rel


def _rename(w: World, old: str, new: str) -> str:
    w.path(old).rename(w.path(new))
    return new


def _npy(w: World, rel: str, array: np.ndarray) -> str:
    w.path(rel).parent.mkdir(parents=True, exist_ok=True)
    np.save(w.path(rel), array)
    return rel.split("/", maxsplit=1)[0]


def _junk_npy(w: World) -> str:
    w.write("junk/set.npy", b"\x93NUMPY\x01\x00garbage")
    return "junk"


def _env(w: World, args: Sequence[str] | None = None, **values: str) -> list[str]:
    w.env(**values)
    return list(build() if args is None else args)


def _manifest(
    w: World, change: Callable[[dict[str, Any]], Any], args: Sequence[str] | None = None
) -> list[str]:
    w.manifest(change)
    return list(["inspect", BUNDLE] if args is None else args)


def _outside(w: World) -> str:
    """A manifest naming ``../../outside/model.tflite``: a real file, with the right hash,
    that lies outside the bundle."""
    w.write("outside/model.tflite", w.path(f"{BUNDLE}/model.tflite").read_bytes())
    w.manifest(lambda m: m["model"].update(file="../../outside/model.tflite"))
    return "outside"


def _other_model(w: World) -> str:
    """Another tiny model (5 classes) with other weights, as a moved or retrained source."""
    tiny_keras_model(w.path("other.keras"), classes=5)
    return "other.keras"


# ---------------------------------------------------------------------------- the checks


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root``: a file's sha256, ``dir`` for a folder."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        found[rel] = "dir" if path.is_dir() else sha256(path.read_bytes()).hexdigest()
    return found


def assert_untouched(
    before: dict[str, str], after: dict[str, str], root: Path, gone: Sequence[str] = ()
) -> None:
    """Nothing added (no bundle, no partial folder, nothing beside --out), nothing changed,
    and nothing removed except ``gone`` (which must be removed). ``out`` itself may stay as
    an empty folder."""

    def removed_on_purpose(rel: str) -> bool:
        return any(rel == g or rel.startswith(g + "/") for g in gone)

    added = sorted(set(after) - set(before))
    if added == ["out"] and not any((root / "out").iterdir()):
        added = []
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    missing = sorted(k for k in set(before) - set(after) if not removed_on_purpose(k))
    kept = sorted(k for k in after if removed_on_purpose(k))
    assert not added, f"left behind: {added}"
    assert not changed, f"changed: {changed}"
    assert not missing, f"removed: {missing}"
    assert not kept, f"should have been removed: {kept}"


def assert_one_error_line(result: CliResult, code: int, needle: str) -> None:
    """The documented exit code, one ``edgepack: `` line on stderr naming the problem, and no
    traceback anywhere."""
    shown = f"exit {result.exit_code}\nstdout: {result.stdout!r}\nstderr: {result.stderr!r}"
    assert "Traceback" not in result.stdout + result.stderr, shown
    assert result.exit_code == code, shown
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, shown
    assert lines[0].startswith("edgepack: "), shown
    assert needle in lines[0], (needle, shown)


# ---------------------------------------------------------------------------- the corpus


@pytest.fixture(scope="module")
def built_bundle(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """One real ``tflite`` bundle of the tiny model, built once for the module: its project
    folder holds ``tiny.keras``, so the manifest records the source as ``tiny.keras``."""
    import edgepack

    work = tmp_path_factory.mktemp("corpus-bundle")
    shutil.copy(tiny_model_dir / "tiny.keras", work / "tiny.keras")
    shutil.copytree(tiny_model_dir / "calib", work / "calib")
    edgepack.build(
        work / "tiny.keras",
        ["tflite"],
        work / "calib",
        out=work / "bundles",
        num_calib=NUM_CALIB,
        cwd=work,
        environ={},
    )
    bundle = work / "bundles" / "tiny-tflite"
    assert (bundle / "manifest.json").is_file()
    return bundle


@pytest.fixture
def world(
    run_cli: Run,
    tiny: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> World:
    """The case's folder, with ``tiny.keras`` and ``calib/`` (from conftest's ``tiny``)."""
    assert tiny["model"] == tmp_path / "tiny.keras"
    return World(tmp_path, monkeypatch)


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 60
    assert len({p.id for p in CASES}) == len(CASES)


@pytest.mark.parametrize("bad", CASES)
def test_bad_input(bad: Case, world: World, run_cli: Run, request: pytest.FixtureRequest) -> None:
    if bad.bundle:
        shutil.copytree(request.getfixturevalue("built_bundle"), world.path(BUNDLE))
    args = bad.make(world)
    before = snapshot(world.root)
    result = run_cli("-q", *args)
    after = snapshot(world.root)
    assert_one_error_line(result, bad.code, bad.needle)
    assert_untouched(before, after, world.root, bad.gone)


# ---------------------------------------------------------------------------- fuzz

FUZZ = settings(
    max_examples=60,  # builds that pass validation convert (about 0.5 s each)
    deadline=None,
    derandomize=True,  # the same examples on every run: an xfail stays an xfail
    database=None,  # nothing written into the repository
    # no "explain" phase: it reruns failing examples under a tracer (minutes with TensorFlow)
    phases=(Phase.explicit, Phase.generate, Phase.shrink),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

VALID_CONTRACT: dict[str, Any] = {
    "input": "image",
    "preprocessing": {
        "size": [6, 6],
        "resize": "nearest",
        "color": "GRAY",
        "scale": 1 / 255,
        "mean": [0.0],
        "std": [1.0],
        "layout": "NHWC",
        "dtype": "float32",
    },
    "labels": {"names": ["0", "1", "2"]},
}

VALID_PROFILE: dict[str, Any] = {
    "profile": {"name": "fuzzed", "extends": "tflite", "description": "fuzzed profile"},
    "settings": {"io_dtype": "int8", "allow_float_fallback": False, "batch_size": 1},
    "calibration": {"num_samples": 8, "seed": 0},
    "drift": {"samples": 50, "min_agreement": "99%", "max_drop": 0.01, "min_sqnr": 15.0},
}

KEY_NAMES = [
    "input", "preprocessing", "labels", "names", "size", "resize", "color", "scale", "mean",
    "std", "layout", "dtype", "profile", "name", "backend", "extends", "description",
    "settings", "io_dtype", "calibration", "num_samples", "seed", "drift", "min_sqnr",
    "target", "model", "file", "sha256", "inputs", "outputs", "shape", "quantization",
]  # fmt: skip
TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), max_codepoint=0x2FF), max_size=10
)
SCALARS = st.one_of(
    st.booleans(),
    st.integers(min_value=-3, max_value=300),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
    st.sampled_from(["", "0", "1%", "150%", "off", "x/../../y", "int8", "GRAY", "NCHW", "a\nb"]),
)
KEYS = st.one_of(st.sampled_from(KEY_NAMES), TEXT)


def values(null: bool) -> st.SearchStrategy[Any]:
    leaves = st.one_of(SCALARS, st.none()) if null else SCALARS
    return st.recursive(
        leaves,
        lambda kids: st.lists(kids, max_size=4) | st.dictionaries(KEYS, kids, max_size=3),
        max_leaves=6,
    )


def toml_string(text: str) -> str:
    escaped = "".join(c if c >= " " and c not in '"\\\x7f' else f"\\u{ord(c):04x}" for c in text)
    return f'"{escaped}"'


def toml_value(value: Any) -> str:
    """A TOML inline value (TOML has no null: callers never pass None)."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float) and not math.isfinite(value):
        text = "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    elif isinstance(value, int | float):
        text = repr(value)
    elif isinstance(value, str):
        text = toml_string(value)
    elif isinstance(value, list):
        text = "[" + ", ".join(toml_value(v) for v in value) + "]"
    elif isinstance(value, dict):
        pairs = ", ".join(f"{toml_string(str(k))} = {toml_value(v)}" for k, v in value.items())
        text = "{" + pairs + "}"
    else:
        raise TypeError(type(value))
    return text


def toml_document(doc: dict[str, Any]) -> str:
    return "".join(f"{toml_string(str(k))} = {toml_value(v)}\n" for k, v in doc.items())


def key_paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside nested dicts and lists."""
    if isinstance(doc, dict):
        items: Any = doc.items()
    elif isinstance(doc, list):
        items = enumerate(doc)
    else:
        return []
    found = []
    for key, value in items:
        found.append((*prefix, key))
        found += key_paths(value, (*prefix, key))
    return found


def mutate(data: st.DataObject, doc: Any, null: bool) -> Any:
    """One to three random edits of ``doc``: a field deleted, replaced by a value of any
    type, or an unknown field added; sometimes the whole document replaced."""
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        paths = key_paths(doc)
        op = data.draw(st.sampled_from(["delete", "replace", "replace", "add", "whole"]))
        if op == "whole" or not paths:
            doc = data.draw(st.dictionaries(KEYS, values(null), max_size=4), label="document")
            continue
        path = data.draw(st.sampled_from(paths), label="path")
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if op == "delete":
            del parent[path[-1]]
        elif op == "replace":
            parent[path[-1]] = data.draw(values(null), label="value")
        elif isinstance(parent[path[-1]], dict):
            parent[path[-1]][data.draw(KEYS, label="key")] = data.draw(values(null))
        else:
            parent[path[-1]] = data.draw(values(null), label="value")
    return doc


def fuzzed_text(data: st.DataObject, text: bytes) -> bytes:
    """Bytes of a document: truncated, with random bytes spliced in, or random bytes."""
    how = data.draw(st.sampled_from(["truncate", "splice", "random"]), label="bytes")
    if how == "random":
        return data.draw(st.binary(max_size=200))
    at = data.draw(st.integers(0, len(text)), label="at")
    if how == "truncate":
        return text[:at]
    return text[:at] + data.draw(st.binary(min_size=1, max_size=12)) + text[at:]


def assert_no_crash(result: CliResult) -> None:
    shown = f"exit {result.exit_code}\nstdout: {result.stdout!r}\nstderr: {result.stderr!r}"
    assert result.exit_code != EXIT_INTERNAL, shown
    assert "Traceback" not in result.stdout + result.stderr, shown
    if result.exit_code not in (0, 1):
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert lines and lines[-1].startswith("edgepack: "), shown


_runs = itertools.count()


def fuzzed_document(data: st.DataObject, how: str, valid: dict[str, Any], kind: str) -> bytes:
    """``valid`` as ``kind`` (toml or json), edited field by field (``how = "edits"``) or
    byte by byte (``"bytes"``)."""
    if kind == "toml":
        if how == "bytes":
            return fuzzed_text(data, toml_document(valid).encode())
        return toml_document(mutate(data, copy.deepcopy(valid), null=False)).encode()
    if how == "bytes":
        return fuzzed_text(data, json.dumps(valid, indent=2).encode())
    changed = mutate(data, copy.deepcopy(valid), null=True)
    if how == "resealed":  # as a buggy writer would leave it: the seal matches the damage
        changed = seal_manifest(changed) if isinstance(changed, dict) else changed
    return json.dumps(changed, indent=2, allow_nan=True).encode()


def fuzz_param(how: str, xfail: str | None = None) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=xfail)] if xfail else []
    return pytest.param(how, id=how, marks=marks)


@pytest.mark.parametrize("how", [fuzz_param("edits"), fuzz_param("bytes")])
@FUZZ
@given(data=st.data())
def test_fuzzed_calibration_toml(
    how: str, data: st.DataObject, run_cli: Run, tiny: dict[str, Path]
) -> None:
    """A valid calibration.toml of the tiny set, edited at random: bad values are a
    calibration error (3), good ones build (0 or 1); never a crash."""
    text = fuzzed_document(data, how, VALID_CONTRACT, "toml")
    (tiny["calib"] / "calibration.toml").write_bytes(text)
    assert_no_crash(run_cli("-q", *build("--out", f"fz/{next(_runs)}")))


@pytest.mark.parametrize("how", [fuzz_param("edits"), fuzz_param("bytes")])
@FUZZ
@given(data=st.data())
def test_fuzzed_profile(
    how: str,
    data: st.DataObject,
    run_cli: Run,
    tiny: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A valid user profile, edited at random: bad values are a configuration error (2)."""
    monkeypatch.setenv("EDGEPACK_LAYERS", "0")  # a fuzzed `layers = true` must stay quick
    (tmp_path / "fuzzed.toml").write_bytes(fuzzed_document(data, how, VALID_PROFILE, "toml"))
    args = build("--no-tune", "--out", f"fz/{next(_runs)}", target="fuzzed.toml")
    assert_no_crash(run_cli("-q", *args))


@pytest.mark.parametrize("how", [fuzz_param("edits"), fuzz_param("resealed"), fuzz_param("bytes")])
@settings(FUZZ, max_examples=150)
@given(data=st.data())
def test_fuzzed_manifest_inspect(
    how: str, data: st.DataObject, run_cli: Run, tmp_path: Path, built_bundle: Path
) -> None:
    """A bundle's manifest.json with fields deleted or of another type: ``inspect`` (the
    summary and ``--json``) says the bundle is damaged (6), never crashes."""
    bundle = tmp_path / BUNDLE
    if not bundle.exists():
        shutil.copytree(built_bundle, bundle)
    original = json.loads((built_bundle / "manifest.json").read_text())
    (bundle / "manifest.json").write_bytes(fuzzed_document(data, how, original, "json"))
    assert_no_crash(run_cli("-q", "inspect", BUNDLE))
    assert_no_crash(run_cli("-q", "inspect", "--json", BUNDLE))


@pytest.mark.parametrize("how", [fuzz_param("edits"), fuzz_param("resealed"), fuzz_param("bytes")])
@settings(FUZZ, max_examples=80)
@given(data=st.data())
def test_fuzzed_manifest_check(
    how: str,
    data: st.DataObject,
    run_cli: Run,
    tiny: dict[str, Path],
    tmp_path: Path,
    built_bundle: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same damage under ``check`` (which verifies the files, the source model and the
    data before any slow work, and whose drift check of the tiny bundle is quick)."""
    monkeypatch.setenv("EDGEPACK_LAYERS", "0")  # a fuzzed `layers = true` must stay quick
    bundle = tmp_path / BUNDLE
    if not bundle.exists():
        shutil.copytree(built_bundle, bundle)
    original = json.loads((built_bundle / "manifest.json").read_text())
    (bundle / "manifest.json").write_bytes(fuzzed_document(data, how, original, "json"))
    assert_no_crash(run_cli("-q", *check()))
