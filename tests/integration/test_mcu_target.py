"""The tflite-micro target: TFLite Micro's kernels only, firmware sources, the smallest arena
measured with TFLite Micro's interpreter, and the drift check on TFLite Micro's kernels."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edgepack import api
from edgepack.backends.tflite_metadata import model_part
from edgepack.backends.tflite_micro import ArenaProbe
from edgepack.errors import EXIT_CONVERSION
from tests.conftest import (
    DIGITS_CALIB,
    DIGITS_EVAL,
    DIGITS_MODEL,
    CliResult,
    assert_one_line_error,
    assert_valid_manifest,
    write_gray_images,
)

pytest.importorskip("tflite_micro", reason="tflite-micro has Linux x86-64 wheels only")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("mcu")
    (result,) = api.build(
        DIGITS_MODEL,
        ["tflite-micro"],
        DIGITS_CALIB,
        eval=DIGITS_EVAL,
        out=out,
        cwd=out,
        environ={},
    )
    return {"result": result, "dir": result.bundle, "manifest": result.manifest}


def c_array_bytes(source: str) -> bytes:
    body = source[source.index("{") + 1 : source.rindex("}")]
    return bytes(int(value, 16) for value in re.findall(r"0x([0-9a-f]{2})", body))


def test_the_bundle_carries_firmware_sources_and_the_measured_arena(bundle: dict) -> None:
    folder, manifest = bundle["dir"], bundle["manifest"]
    assert_valid_manifest(manifest)
    files = sorted(p.name for p in folder.iterdir())
    firmware = ["model_data.cc", "model_data.h", "op_resolver.h"]
    bundled = ["model.tflite", "manifest.json", "drift.json", "labels.txt", "firmware-note.md"]
    assert files == sorted([*firmware, *bundled])
    micro = manifest["model"]["micro"]
    assert micro["ops"] == ["CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D", "RESHAPE", "SOFTMAX"]
    assert micro["resolver"] == [
        "AddConv2D",
        "AddFullyConnected",
        "AddMaxPool2D",
        "AddReshape",
        "AddSoftmax",
    ]
    # measured 10,240 bytes with tflite-micro 0.dev20261023 on x86-64
    assert micro["arena_bytes"] % 16 == 0 and 8 * 1024 <= micro["arena_bytes"] <= 12 * 1024
    header = (folder / "model_data.h").read_text()
    assert f"g_model_arena_size = {micro['arena_bytes']};" in header
    data = c_array_bytes((folder / "model_data.cc").read_text())
    assert len(data) == micro["model_data_bytes"] and f"g_model_data_size = {len(data)};" in header
    assert data[4:8] == b"TFL3" and len(data) < len(
        model_part((folder / "model.tflite").read_bytes())
    )
    resolver = (folder / "op_resolver.h").read_text()
    assert "kModelOpCount = 5;" in resolver and resolver.count("TF_LITE_ENSURE_STATUS") == 5
    for name in micro["files"]:  # hashed like every bundle file
        assert name in manifest["files"]


def test_the_c_array_runs_in_the_measured_arena_and_not_below(bundle: dict, tmp_path: Path) -> None:
    from tflite_micro import runtime

    data = c_array_bytes((bundle["dir"] / "model_data.cc").read_text())
    arena = bundle["manifest"]["model"]["micro"]["arena_bytes"]
    interpreter = runtime.Interpreter.from_bytes(data, arena_size=arena)
    pixels = np.full((1, 8, 8, 1), -128, np.int8)
    interpreter.set_input(pixels, 0)
    interpreter.invoke()
    assert interpreter.get_output(0).shape == (1, 10)
    model_file = tmp_path / "model_data.bin"
    model_file.write_bytes(data)
    probe = ArenaProbe(model_file, inputs=1)  # a child process: small arenas can crash
    try:
        assert not probe.fits(arena - 16)
    finally:
        probe.close()


def test_the_drift_check_runs_tflite_micro_kernels(bundle: dict) -> None:
    paths = {p["name"]: p for p in bundle["manifest"]["drift"]["paths"]}
    assert set(paths) == {"micro", "reference"}
    assert paths["micro"]["runtime"].startswith("tflite-micro ")
    # measured: bit-exact with LiteRT's reference kernels on the 400 evaluation images
    assert paths["micro"]["top1_agreement"] >= 0.99 and paths["micro"]["min_sqnr_db"] > 40
    assert paths["micro"]["min_sqnr_db"] == pytest.approx(paths["reference"]["min_sqnr_db"])
    assert bundle["result"].passed


def test_the_c_sources_compile(bundle: dict, tmp_path: Path) -> None:
    compiler = shutil.which("g++")
    if compiler is None:
        pytest.skip("no C++ compiler on this host")
    for name in ("model_data.cc", "model_data.h"):
        shutil.copy(bundle["dir"] / name, tmp_path / name)
    result = subprocess.run(
        [compiler, "-std=c++17", "-Wall", "-Wextra", "-Werror", "-c", "model_data.cc"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "model_data.o").stat().st_size > bundle["manifest"]["model"]["micro"][
        "model_data_bytes"
    ]


def test_check_reruns_the_micro_path(bundle: dict, tmp_path: Path) -> None:
    checked = api.check(
        bundle["dir"], DIGITS_EVAL, model=DIGITS_MODEL, samples=60, cwd=tmp_path, environ={}
    )
    assert {p.name for p in checked.report.paths} == {"micro", "reference"}
    assert checked.passed


def test_an_op_tflite_micro_lacks_is_refused_naming_it(
    run_cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    """GELU: TFLite has an int8 kernel, TFLite Micro none."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((6, 6, 1), name="image"),
            keras.layers.Flatten(),
            keras.layers.Dense(8, activation="gelu"),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.save(tmp_path / "gelu.keras")
    write_gray_images(tmp_path / "calib", 24, (6, 6), classes=3)
    result = run_cli(
        "-q", "build", "gelu.keras", "-t", "tflite-micro", "-c", "calib", "--out", "out"
    )
    assert_one_line_error(result, EXIT_CONVERSION, "TFLite Micro has no kernel for GELU")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_all_means_one_bundle_per_backend() -> None:
    assert [p.name for p in api.resolve_targets(["all"])] == ["tflite", "onnx", "coreml"]
    assert [p.name for p in api.resolve_targets(["tflite-micro"])] == ["tflite-micro"]
