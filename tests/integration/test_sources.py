"""Every source format loads into a SourceModel whose float run is right."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edgepack.frontends import load_source
from tests.conftest import CliResult, assert_valid_manifest, write_gray_images
from tests.integration.models import savedmodel_classifier, tiny_onnx


def test_onnx_source_runs_as_float_reference(tmp_path: Path) -> None:
    path, weight, bias = tiny_onnx(tmp_path / "tiny.onnx")
    source = load_source(path)
    assert source.format == "onnx"
    assert [(s.name, s.shape) for s in source.inputs] == [("x", (None, 1, 6, 6))]
    x = np.random.default_rng(0).random((5, 1, 6, 6)).astype(np.float32)
    logits = x.reshape(5, 36) @ weight + bias
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(source.run({"x": x})["probs"], expected, rtol=1e-5)


def test_keras_h5_source(tmp_path: Path) -> None:
    import keras

    model = keras.Sequential(
        [keras.Input((4,), name="features"), keras.layers.Dense(2, name="out")]
    )
    model.save(tmp_path / "m.h5")
    source = load_source(tmp_path / "m.h5")
    x = np.ones((3, 4), np.float32)
    np.testing.assert_allclose(source.run({"features": x})["out"], model(x).numpy(), rtol=1e-6)


def test_savedmodel_source_builds_a_tflite_bundle(
    run_cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    savedmodel_classifier(tmp_path / "classifier")
    write_gray_images(tmp_path / "calib", 60, (6, 6), classes=3)
    source = load_source(tmp_path / "classifier")
    assert source.format == "savedmodel"
    assert [s.name for s in source.outputs] == ["scores"]
    result = run_cli(
        "-q",
        "build",
        "classifier",
        "-t",
        "tflite",
        "-c",
        "calib",
        "--num-calib",
        "40",
        "--min-agreement",
        "off",
        "--max-drop",
        "off",
    )
    assert result.exit_code == 0, result.stderr
    manifest = json.loads(
        (tmp_path / "bundles" / "classifier-tflite" / "manifest.json").read_text()
    )
    assert_valid_manifest(manifest)
    assert manifest["source"]["format"] == "savedmodel"
    assert manifest["outputs"][0]["source_name"] == "scores"
    assert manifest["model"]["float_ops"] == []
    assert manifest["drift"]["min_sqnr_db"] > 20.0


@pytest.mark.parametrize("value", ["off"])
def test_thresholds_can_be_switched_off_on_the_command_line(value: str) -> None:
    from edgepack.options import cli_layer

    assert cli_layer({"drift.min_agreement": value})["drift.min_agreement"] is None
