"""Shared fixtures: tiny models built in code, generated sample sets, and a CLI runner."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edgepack.cli import cli

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _qnn_lpai_stand_in() -> None:
    """LiteRT's Qualcomm compiler plugin links ``libQnnLpai.so`` (QNN's low-power-island
    backend), which onnxruntime-qnn does not ship. The plugin takes no symbol from it: it
    opens the QNN backends by path when it runs. So the tests give the loader a library of
    that name, glibc's ``libdl.so.2``, in a folder put on ``LD_LIBRARY_PATH`` (inherited by
    the plugin's process). The product does no such thing: without the library it reports
    Qualcomm's TFLite placement as not measured and says why (README: NPU placement)."""
    import importlib.util
    import tempfile

    spec = importlib.util.find_spec("onnxruntime_qnn")
    if spec is None or not spec.submodule_search_locations or os.environ.get("QNN_SDK_ROOT"):
        return
    if (Path(next(iter(spec.submodule_search_locations))) / "libQnnLpai.so").exists():
        return
    libdl = next(
        (Path(p) for p in ("/lib/x86_64-linux-gnu/libdl.so.2", "/usr/lib64/libdl.so.2",
                           "/lib64/libdl.so.2") if Path(p).exists()),
        None,
    )  # fmt: skip
    if libdl is None:
        return
    folder = Path(tempfile.gettempdir()) / f"edgepack-tests-qnn-{os.getuid()}"
    folder.mkdir(exist_ok=True)
    link = folder / "libQnnLpai.so"
    if not link.exists():
        with contextlib.suppress(FileExistsError):  # another test worker made it first
            link.symlink_to(libdl)
    paths = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    if str(folder) not in paths:
        os.environ["LD_LIBRARY_PATH"] = os.pathsep.join([str(folder), *paths])


_qnn_lpai_stand_in()

REPO = Path(__file__).resolve().parents[1]
DIGITS_MODEL = REPO / "examples" / "digits" / "digits.keras"
DIGITS_CALIB = REPO / "calibration" / "digits" / "calib"
DIGITS_EVAL = REPO / "calibration" / "digits" / "eval"

GRAY_CONTRACT = """\
input = "{input}"
[preprocessing]
size = [{h}, {w}]
resize = "nearest"
color = "GRAY"
scale = 0.00392156862745098
layout = "NHWC"
"""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first: with ``pytest -n auto`` the workers start on the minutes-long
    real-model builds while the short tests fill in around them, instead of one worker
    finishing a long test alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., CliResult]:
    """Run ``edgepack ARGS`` in-process from ``tmp_path`` with no EDGEPACK_* variables."""
    for name in list(os.environ):
        if name.startswith("EDGEPACK_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> CliResult:
        result = CliRunner().invoke(cli, [str(a) for a in args], prog_name="edgepack")
        return CliResult(result.exit_code, result.stdout, result.stderr)

    return run


def write_gray_images(
    folder: Path,
    count: int,
    size: tuple[int, int],
    classes: int = 0,
    seed: int = 0,
    input_name: str = "image",
) -> Path:
    """``count`` random grey PNGs; in ``classes`` sub-folders when classes > 0."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        pixels = rng.integers(0, 256, size=size, dtype=np.uint8)
        target = folder / (f"{i % classes}" if classes else ".") / f"{i:03d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, mode="L").save(target)
    (folder / "calibration.toml").write_text(
        GRAY_CONTRACT.format(input=input_name, h=size[0], w=size[1])
    )
    return folder


def tiny_keras_model(path: Path, size: tuple[int, int] = (6, 6), classes: int = 3) -> Path:
    """A small conv classifier with fixed random weights, saved as .keras."""
    import keras

    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            keras.Input((*size, 1), name="image"),
            keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(classes, activation="softmax", name="scores"),
        ]
    )
    model.save(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-wide folder with a tiny Keras model and a matching labelled image set."""
    folder = tmp_path_factory.mktemp("tiny")
    tiny_keras_model(folder / "tiny.keras")
    write_gray_images(folder / "calib", 40, (6, 6), classes=3)
    return folder


@pytest.fixture
def tiny(tmp_path: Path, tiny_model_dir: Path) -> dict[str, Path]:
    """A private copy of the tiny model and its calibration set."""
    shutil.copy(tiny_model_dir / "tiny.keras", tmp_path / "tiny.keras")
    shutil.copytree(tiny_model_dir / "calib", tmp_path / "calib")
    return {"model": tmp_path / "tiny.keras", "calib": tmp_path / "calib"}


# Per backend, the execution path that computes the same on every host (README: Execution
# paths): numeric bounds are asserted there, so they hold on AVX2, AVX-512 and ARM alike.
PORTABLE_PATH = {"onnx": "unoptimized", "tflite": "reference", "coreml": "emulator"}


def portable_figures(manifest: dict) -> dict:
    """The drift figures (``top1_agreement``, ``min_sqnr_db``, ``verdict``) of a manifest's
    host-independent execution path."""
    wanted = PORTABLE_PATH[manifest["target"]["backend"]]
    (found,) = [p for p in manifest["drift"]["paths"] if p["name"] == wanted]
    return found


def assert_one_line_error(result: CliResult, code: int, *needles: str) -> None:
    """A user error run with ``-q``: the exit code, exactly one line on stderr, no traceback."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("edgepack: "), lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def assert_valid_manifest(manifest: dict) -> None:
    """Every manifest edgepack writes must validate against the schema it ships."""
    import json

    import jsonschema

    from edgepack.bundle import SCHEMA_FILE

    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.validate(manifest, schema, format_checker=jsonschema.FormatChecker())


def folder_is_empty(out: Path) -> bool:
    """True when ``out`` does not exist or holds nothing (no bundle, no partial bundle)."""
    return not out.exists() or not any(out.iterdir())
