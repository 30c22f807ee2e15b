"""The coreml target's quantization modes on the digits example, and its bad inputs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgepack import api
from edgepack.backends.coreml import PREVIEW_TYPE_KEY
from edgepack.emulators.coreml import CoreMLEmulator
from tests.conftest import (
    DIGITS_CALIB,
    DIGITS_EVAL,
    DIGITS_MODEL,
    CliResult,
    assert_one_line_error,
    assert_valid_manifest,
    folder_is_empty,
)


def profile(tmp_path: Path, quantize: str, target: str = "iOS17") -> Path:
    path = tmp_path / f"coreml-{quantize}.toml"
    path.write_text(
        f'[profile]\nname = "coreml-{quantize}"\nextends = "coreml"\n'
        f'description = "{quantize}"\n[settings]\nquantize = "{quantize}"\n'
        f'deployment_target = "{target}"\n'
    )
    return path


def test_w8a8_ranges_come_from_the_emulator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from coremltools.optimize.coreml.experimental._model_debugger import ModelDebugger

    calls: list[int] = []
    capture = CoreMLEmulator.capture

    def counting_capture(self, inputs, names=None):  # type: ignore[no-untyped-def]
        calls.append(len(list(names or [])))
        return capture(self, inputs, names)

    monkeypatch.setattr(CoreMLEmulator, "capture", counting_capture)
    original = ModelDebugger.predict_intermediate_outputs
    result = api.build(
        DIGITS_MODEL,
        [str(profile(tmp_path, "w8a8"))],
        DIGITS_CALIB,
        out=tmp_path,
        num_calib=50,
        environ={},
    )[0]
    assert ModelDebugger.predict_intermediate_outputs is original  # restored
    assert len(calls) >= 50 and max(calls) >= 8  # every calibration sample, many tensors
    manifest = result.manifest
    assert_valid_manifest(manifest)
    ops = manifest["model"]["ops"]
    assert ops["quantize"] == ops["dequantize"] >= 5
    assert ops["constexpr_affine_dequantize"] == 2
    assert manifest["calibration"]["method"].startswith("minmax")
    assert result.report.top1_agreement >= 0.98
    assert result.report.accuracy_drop <= 0.01


@pytest.mark.parametrize("mode", ["fp16", "palettize4", "palettize6"])
def test_other_modes(tmp_path: Path, mode: str) -> None:
    result = api.build(
        DIGITS_MODEL,
        [str(profile(tmp_path, mode))],
        DIGITS_CALIB,
        out=tmp_path,
        num_calib=100,
        drift_samples=100,
        environ={},
    )[0]
    ops = result.manifest["model"]["ops"]
    weights = (
        (
            result.bundle
            / result.manifest["model"]["file"]
            / "Data"
            / "com.apple.CoreML"
            / "weights"
            / "weight.bin"
        )
        .stat()
        .st_size
    )
    if mode == "fp16":
        assert "constexpr_affine_dequantize" not in ops and "constexpr_lut_to_dense" not in ops
        assert weights >= 2 * 151_306  # fp16 weights, uncompressed
    else:
        assert ops["constexpr_lut_to_dense"] == 2
        bits = int(mode[-1])
        assert weights < 2 * 151_306 * (bits / 16 + 0.15)
    assert result.report.top1_agreement >= 0.98


def test_mode_too_new_for_the_deployment_target(
    run_cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    path = profile(tmp_path, "w8a8", "iOS16")
    result = run_cli("-q", "build", DIGITS_MODEL, "-t", path, "-c", DIGITS_CALIB, "--out", "out")
    assert_one_line_error(result, 2, "w8a8", "iOS17 or newer")
    assert folder_is_empty(tmp_path / "out")


def test_unknown_mode(run_cli: Callable[..., CliResult], tmp_path: Path) -> None:
    (tmp_path / "edgepack.toml").write_text('[targets.coreml.settings]\nquantize = "w4"\n')
    result = run_cli("-q", "build", DIGITS_MODEL, "-t", "coreml", "-c", DIGITS_CALIB)
    assert_one_line_error(result, 2, "quantize must be one of")


def test_manifest_records_emulated_drift(tmp_path: Path) -> None:
    result = api.build(
        DIGITS_MODEL,
        ["coreml"],
        DIGITS_CALIB,
        out=tmp_path,
        num_calib=100,
        drift_samples=50,
        environ={},
    )[0]
    drift = json.loads((result.bundle / "drift.json").read_text())
    assert drift["runtime_kind"] == "emulated" and "emulator" in drift["runtime"]
    # the fp16 program takes float16 arrays: the preprocessing contract says so too
    [fed] = result.manifest["inputs"]
    contract = result.manifest["preprocessing"]
    assert fed["dtype"] == contract["dtype"] == "float16"
    assert contract["source_dtype"] == "float32"
    checked = api.check(result.bundle, DIGITS_EVAL, model=DIGITS_MODEL, cwd=tmp_path, environ={})
    assert checked.report.top1_agreement > 0.95 and checked.report.path == "emulator"


def ct_spec(package: Path) -> Any:
    from coremltools.proto import Model_pb2

    spec = Model_pb2.Model()
    spec.ParseFromString((package / "Data/com.apple.CoreML/model.mlmodel").read_bytes())
    return spec


def image_profile(tmp_path: Path) -> Path:
    path = tmp_path / "coreml-image.toml"
    path.write_text(
        '[profile]\nname = "coreml-image"\nextends = "coreml"\n'
        'description = "image input"\n[settings]\nimage_input = true\n'
    )
    return path


def test_image_input_from_the_contract(tmp_path: Path) -> None:
    from PIL import Image

    from edgepack.frontends import load_source

    result = api.build(
        DIGITS_MODEL,
        [str(image_profile(tmp_path))],
        DIGITS_CALIB,
        out=tmp_path,
        num_calib=100,
        drift_samples=100,
        environ={},
    )[0]
    (image,) = result.manifest["inputs"]
    assert (image["dtype"], image["shape"]) == ("image", [1, 8, 8, 1])
    assert image["image"] == {"color": "GRAY", "scale": pytest.approx(1 / 255), "bias": [0.0]}
    assert result.report.top1_agreement >= 0.99
    # an image classifier: Xcode shows its preview, and generates the class Digits
    assert result.manifest["model"]["file"] == "Digits.mlpackage"
    assert result.manifest["model"]["class_name"] == "Digits"
    spec = ct_spec(result.bundle / "Digits.mlpackage")
    assert spec.description.metadata.userDefined[PREVIEW_TYPE_KEY] == "imageClassifier"
    # an app passes pixels; the model applies the contract's scale itself
    pixels = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    emulator = CoreMLEmulator(result.bundle / result.manifest["model"]["file"])
    scores = emulator.predict({"image": Image.fromarray(pixels, "L")})["probabilities_probs"]
    predicted = np.array([[scores[str(digit)] for digit in range(10)]])
    expected = load_source(DIGITS_MODEL).run(
        {"image": pixels[None, :, :, None].astype(np.float32) / 255}
    )["probabilities"]
    assert np.abs(predicted - expected).max() < 2e-2  # fp16 compute, int8 weights


def test_rgb_image_input_with_mean_std_from_an_nchw_onnx_model(tmp_path: Path) -> None:
    from tests.integration.models import conv_onnx
    from tests.integration.test_onnx_sources import rgb_set

    conv_onnx(tmp_path / "conv.onnx")
    rgb_set(tmp_path / "calib", "NCHW")
    result = api.build(
        tmp_path / "conv.onnx",
        [str(image_profile(tmp_path))],
        tmp_path / "calib",
        out=tmp_path / "out",
        num_calib=30,
        min_agreement="off",
        max_drop="off",
        environ={},
    )[0]
    (image,) = result.manifest["inputs"]
    # x = (pixel / 255 - 0.5) / 0.25 = pixel * (1 / 63.75) - 2
    assert image["image"]["color"] == "RGB"
    assert image["image"]["scale"] == pytest.approx(1 / 63.75)
    assert image["image"]["bias"] == pytest.approx([-2.0, -2.0, -2.0])
    assert result.report.min_sqnr_db > 30.0


def test_image_input_needs_one_std(run_cli: Callable[..., CliResult], tmp_path: Path) -> None:
    from tests.integration.models import conv_onnx
    from tests.integration.test_onnx_sources import rgb_set

    conv_onnx(tmp_path / "conv.onnx")
    calib = rgb_set(tmp_path / "calib", "NCHW")
    contract = (
        (calib / "calibration.toml")
        .read_text()
        .replace("std = [0.25, 0.25, 0.25]", "std = [0.2, 0.25, 0.3]")
    )
    (calib / "calibration.toml").write_text(contract)
    result = run_cli(
        "-q", "build", "conv.onnx", "-t", image_profile(tmp_path), "-c", "calib", "--out", "out"
    )
    assert_one_line_error(result, 4, "one scale for every channel")
    assert folder_is_empty(tmp_path / "out")


def test_classifier_outputs_like_core_ml(tmp_path: Path) -> None:
    result = api.build(
        DIGITS_MODEL,
        ["coreml"],
        DIGITS_CALIB,
        out=tmp_path,
        num_calib=100,
        drift_samples=100,
        environ={},
    )[0]
    manifest = result.manifest
    assert manifest["model"]["classifier"] == {
        "label_output": "classLabel",
        "probabilities_output": "probabilities_probs",
    }
    (output,) = manifest["outputs"]
    assert (output["dtype"], output["classes"]) == ("dictionary", [str(i) for i in range(10)])
    emulator = CoreMLEmulator(result.bundle / result.manifest["model"]["file"])
    image = np.zeros((1, 8, 8, 1), np.float32)
    image[0, 1:7, 3:5, 0] = 1.0  # a vertical bar
    predicted = emulator.predict({"image": image})
    probabilities = predicted["probabilities_probs"]
    assert isinstance(predicted["classLabel"], str) and set(probabilities) == set(output["classes"])
    assert predicted["classLabel"] == max(probabilities, key=probabilities.get)
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-2)


def test_no_classifier_without_labels(tmp_path: Path) -> None:
    (tmp_path / "edgepack.toml").write_text("[targets.coreml.settings]\nclassifier = false\n")
    result = api.build(
        DIGITS_MODEL,
        ["coreml"],
        DIGITS_CALIB,
        out=tmp_path / "o",
        num_calib=100,
        drift_samples=50,
        cwd=tmp_path,
        environ={},
    )[0]
    assert result.manifest["model"]["classifier"] is None
    # an fp16 ML program hands the app float16 arrays: the manifest says what the file says
    assert result.manifest["outputs"][0]["dtype"] == "float16"


def test_op_coremltools_cannot_convert(run_cli: Callable[..., CliResult], tmp_path: Path) -> None:
    from tests.conftest import write_gray_images
    from tests.integration.models import savedmodel_with_digamma

    savedmodel_with_digamma(tmp_path / "digamma")
    write_gray_images(tmp_path / "calib", 20, (6, 6), classes=3)
    result = run_cli("-q", "build", "digamma", "-t", "coreml", "-c", "calib", "--out", "out")
    assert_one_line_error(result, 4, "cannot convert TF op(s) Digamma")
    assert folder_is_empty(tmp_path / "out")
