"""The shipped example end to end through the CLI: build, check, inspect, with figures."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from edgepack.bundle import SCHEMA_FILE
from edgepack.cli import cli
from edgepack.errors import EXIT_BUNDLE, EXIT_CONVERSION, EXIT_DRIFT, EXIT_EXISTS
from tests.conftest import (
    DIGITS_CALIB,
    DIGITS_EVAL,
    DIGITS_MODEL,
    CliResult,
    assert_one_line_error,
    assert_valid_manifest,
)


def invoke(*args: object, cwd: Path) -> tuple[int, str, str]:
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        result = CliRunner().invoke(cli, [str(a) for a in args], prog_name="edgepack")
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("digits")
    # the project holds its model: the bundles record it relative to the project root, and a
    # check finds it from the bundles' folder (work/bundles/...)
    model = shutil.copy(DIGITS_MODEL, work / DIGITS_MODEL.name)
    code, stdout, stderr = invoke(
        "build",
        model,
        "--target",
        "tflite",
        "--target",
        "onnx",
        "--target",
        "coreml",
        "--calib",
        DIGITS_CALIB,
        "--out",
        work / "bundles",
        cwd=work,
    )
    assert code == 0, stderr
    assert "tflite" in stdout and "onnx" in stdout and "pass" in stdout
    return work / "bundles" / "digits-tflite"


@pytest.fixture(scope="module")
def onnx_bundle(bundle: Path) -> Path:
    return bundle.parent / "digits-onnx"


@pytest.fixture(scope="module")
def coreml_bundle(bundle: Path) -> Path:
    return bundle.parent / "digits-coreml"


def manifest_of(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def test_manifest_validates_against_the_shipped_schema(bundle: Path) -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.validate(manifest_of(bundle), schema, format_checker=jsonschema.FormatChecker())


def test_bundle_is_full_integer_int8(bundle: Path) -> None:
    manifest = manifest_of(bundle)
    assert manifest["model"]["float_ops"] == []
    assert manifest["model"]["ops"] == {
        "CONV_2D": 2,
        "FULLY_CONNECTED": 2,
        "MAX_POOL_2D": 1,
        "RESHAPE": 1,
        "SOFTMAX": 1,
    }
    (image,) = manifest["inputs"]
    assert (image["dtype"], image["shape"], image["layout"]) == ("int8", [1, 8, 8, 1], "NHWC")
    # inputs span [0, 1]: scale 1/255, zero point -128
    assert image["quantization"]["scale"] == pytest.approx(1 / 255, rel=1e-3)
    assert image["quantization"]["zero_point"] == -128
    assert manifest["outputs"][0]["dtype"] == "int8"
    assert manifest["labels"] == [str(i) for i in range(10)]
    assert (bundle / "labels.txt").read_text().split() == manifest["labels"]


def test_build_drift_meets_the_budget(bundle: Path) -> None:
    drift = manifest_of(bundle)["drift"]
    assert drift["verdict"] == "pass"
    assert drift["samples"] == 200  # 400 images, 200 calibrate, 200 held out
    assert drift["top1_agreement"] >= 0.99
    assert drift["accuracy_drop"] <= 0.01
    assert drift["min_sqnr_db"] >= 30.0
    full = json.loads((bundle / "drift.json").read_text())
    assert full["outputs"][0]["name"] == "probabilities"


def test_bundle_is_under_0_3x_the_float_tflite(bundle: Path, tmp_path: Path) -> None:
    from edgepack._native import captured_output, import_tensorflow
    from edgepack.frontends import load_source

    tf = import_tensorflow()
    source = load_source(DIGITS_MODEL)
    with captured_output():
        float_model = tf.lite.TFLiteConverter.from_keras_model(source.native).convert()
    ratio = manifest_of(bundle)["model"]["size_bytes"] / len(float_model)
    assert ratio <= 0.3, ratio


def test_check_on_the_evaluation_split(bundle: Path, tmp_path: Path) -> None:
    report_file = tmp_path / "report.json"
    code, stdout, stderr = invoke(
        "check", bundle, "--data", DIGITS_EVAL, "--json", report_file, cwd=tmp_path
    )
    assert code == 0, stderr
    assert "verdict: pass" in stdout
    report = json.loads(report_file.read_text())
    assert report["samples"] == 400
    assert report["accuracy_float"] >= 0.95
    assert report["top1_agreement"] >= 0.99
    assert report["accuracy_drop"] <= 0.01
    assert report["verdict"] == "pass"


def test_check_fails_with_exit_1_when_over_budget(bundle: Path, tmp_path: Path) -> None:
    code, _, stderr = invoke(
        "-q", "check", bundle, "--data", DIGITS_EVAL, "--min-sqnr", "90", cwd=tmp_path
    )
    assert code == EXIT_DRIFT
    assert "SQNR of 'probabilities'" in stderr and "< 90.00 dB" in stderr


def test_check_thresholds_from_config_and_environment(bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "edgepack.toml").write_text("[targets.tflite.drift]\nmin_sqnr = 90\n")
    code, _, _ = invoke("-q", "check", bundle, "--data", DIGITS_EVAL, cwd=tmp_path)
    assert code == EXIT_DRIFT
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EDGEPACK_MIN_SQNR", "20")
        code, _, stderr = invoke("-q", "check", bundle, "--data", DIGITS_EVAL, cwd=tmp_path)
    assert code == 0, stderr


def test_check_refuses_a_changed_source_model(bundle: Path, tmp_path: Path) -> None:
    changed = tmp_path / "digits.keras"
    shutil.copy(DIGITS_MODEL, changed)
    with changed.open("ab") as handle:
        handle.write(b"\0")
    code, _, stderr = invoke(
        "-q", "check", bundle, "--data", DIGITS_EVAL, "--model", changed, cwd=tmp_path
    )
    assert code == EXIT_BUNDLE
    assert "sha256 differs" in stderr and stderr.count("\n") == 1


def test_check_refuses_a_tampered_bundle(bundle: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    with (copy / "model.tflite").open("ab") as handle:
        handle.write(b"\0")
    code, _, stderr = invoke("-q", "check", copy, "--data", DIGITS_EVAL, cwd=tmp_path)
    assert code == EXIT_BUNDLE and "model.tflite: sha256 differs" in stderr


def test_inspect_summary_and_json(bundle: Path, tmp_path: Path) -> None:
    code, stdout, _ = invoke("inspect", bundle, cwd=tmp_path)
    assert code == 0
    for needle in (
        "tflite",
        "int8",
        "0.00392157",
        "-128",
        "GRAY",
        "probabilities",
        "deployment notes: firmware-note.md (in the bundle)",
    ):
        assert needle in stdout, needle
    code, stdout, _ = invoke("inspect", bundle, "--json", cwd=tmp_path)
    assert json.loads(stdout) == manifest_of(bundle)


def test_existing_bundle_needs_force(bundle: Path) -> None:
    out = bundle.parent
    before = (bundle / "manifest.json").read_text()
    code, stdout, stderr = invoke(
        "-q", "build", DIGITS_MODEL, "-t", "tflite", "-c", DIGITS_CALIB, "--out", out, cwd=out
    )
    assert_one_line_error(CliResult(code, stdout, stderr), EXIT_EXISTS, "--force")
    assert (bundle / "manifest.json").read_text() == before


def test_uint8_profile_from_a_user_file(tmp_path: Path) -> None:
    profile = tmp_path / "android-uint8.toml"
    profile.write_text(
        '[profile]\nname = "android-uint8"\nextends = "tflite"\n'
        'description = "uint8 I/O for older NNAPI drivers"\n'
        '[settings]\nio_dtype = "uint8"\n'
    )
    code, _, stderr = invoke(
        "-q",
        "build",
        DIGITS_MODEL,
        "-t",
        profile,
        "-c",
        DIGITS_CALIB,
        "--num-calib",
        "100",
        "--drift-samples",
        "100",
        cwd=tmp_path,
    )
    assert code == 0, stderr
    manifest = manifest_of(tmp_path / "bundles" / "digits-android-uint8")
    assert_valid_manifest(manifest)
    assert manifest["inputs"][0]["dtype"] == "uint8"
    assert manifest["inputs"][0]["quantization"]["zero_point"] == 0
    assert manifest["drift"]["samples"] == 100
    assert manifest["target"]["profile_source"] == profile.name  # relative to the project root


def test_onnx_bundle_is_int8_qdq_and_meets_the_budget(onnx_bundle: Path) -> None:
    manifest = manifest_of(onnx_bundle)
    assert_valid_manifest(manifest)
    model = manifest["model"]
    assert model["converted_from"] == "keras"
    assert model["float_max_rel_error"] < 1e-5  # tf2onnx's float model matches Keras
    assert model["ops"]["QuantizeLinear"] >= 5 and model["ops"]["DequantizeLinear"] >= 10
    assert model["ops"]["Conv"] == 2 and model["ops"]["Gemm"] == 2
    assert model["size_bytes"] / model["float_size_bytes"] <= 0.3
    (image,) = manifest["inputs"]
    assert (image["dtype"], image["shape"], image["quantization"]) == (
        "float32",
        [-1, 8, 8, 1],
        None,
    )
    assert manifest["calibration"]["method"] == "minmax"
    drift = manifest["drift"]
    assert drift["top1_agreement"] >= 0.99 and drift["accuracy_drop"] <= 0.01


def test_onnx_check_on_the_evaluation_split(onnx_bundle: Path, tmp_path: Path) -> None:
    report_file = tmp_path / "report.json"
    code, _, stderr = invoke(
        "check", onnx_bundle, "--data", DIGITS_EVAL, "--json", report_file, cwd=tmp_path
    )
    assert code == 0, stderr
    report = json.loads(report_file.read_text())
    assert report["runtime"].startswith("onnxruntime")
    assert report["samples"] == 400
    assert report["top1_agreement"] >= 0.99 and report["accuracy_drop"] <= 0.01


def test_coreml_w8_bundle_compresses_weights_and_meets_the_budget(coreml_bundle: Path) -> None:
    manifest = manifest_of(coreml_bundle)
    assert_valid_manifest(manifest)
    model = manifest["model"]
    assert (model["quantize"], model["compute_precision"], model["opset"]) == (
        "w8",
        "fp16",
        "CoreML7",
    )
    assert model["ops"]["constexpr_affine_dequantize"] == 2  # the two large weights
    weights = coreml_bundle / "Digits.mlpackage" / "Data" / "com.apple.CoreML" / "weights"
    weight_bytes = (weights / "weight.bin").stat().st_size
    float_weights = 4 * 151_306  # the digits CNN's parameters in fp32
    assert weight_bytes <= 0.3 * float_weights
    assert 0.4 <= weight_bytes / (2 * 151_306) <= 0.6  # about half the fp16 weights
    drift = manifest["drift"]
    assert drift["runtime_kind"] == "emulated"
    assert drift["top1_agreement"] >= 0.99 and drift["accuracy_drop"] <= 0.01


def test_coreml_check_emulated_and_native_on_linux(coreml_bundle: Path, tmp_path: Path) -> None:
    report_file = tmp_path / "report.json"
    code, _, stderr = invoke(
        "check", coreml_bundle, "--data", DIGITS_EVAL, "--json", report_file, cwd=tmp_path
    )
    assert code == 0, stderr
    report = json.loads(report_file.read_text())
    assert report["runtime_kind"] == "emulated" and report["samples"] == 400
    assert report["top1_agreement"] >= 0.99
    code, _, stderr = invoke(
        "-q", "check", coreml_bundle, "--data", DIGITS_EVAL, "--runtime", "native", cwd=tmp_path
    )
    if sys.platform != "darwin":
        assert code == EXIT_CONVERSION and "only on macOS" in stderr


def test_host_runtimes_are_recorded_as_such(bundle: Path, onnx_bundle: Path) -> None:
    assert manifest_of(bundle)["drift"]["runtime_kind"] == "host"
    assert manifest_of(onnx_bundle)["drift"]["runtime_kind"] == "host"
