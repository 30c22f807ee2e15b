"""YOLO-style detector outputs in both layouts, built in code and quantized for real: with one
int8 scale for the whole tensor the class scores lose their resolution beside pixel boxes, and
the check must fail on it, naming the score rows (collapse found on the right axis) and the
lost detections (recall). Where the target has 16-bit activations, such an output's concat
gets them and the scores are kept."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliResult, portable_figures, write_gray_images
from tests.integration.models import savedmodel_yolo_head, uint8_tflite_profile
from tests.unit.test_channels import validate_drift_report

AXIS = {"channels_first": 1, "channels_last": 2}


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_a_detector_whose_scores_collapse_fails(
    run_cli: Callable[..., CliResult], tmp_path: Path, layout: str
) -> None:
    """Where the target has no wider type for the concat (uint8 I/O), the scores collapse."""
    savedmodel_yolo_head(tmp_path / "yolo", layout)
    write_gray_images(tmp_path / "calib", 60, (8, 8))
    result = run_cli(
        "build", "yolo", "-t", uint8_tflite_profile(tmp_path), "-c", "calib", "-n", "40",
        "--min-agreement", "off", "--max-drop", "off",
    )  # fmt: skip
    assert result.exit_code == 1, result.stderr  # drift exceeded, bundle written
    drift = json.loads((tmp_path / "bundles" / "yolo-tflite-uint8" / "drift.json").read_text())
    validate_drift_report(drift)
    (output,) = drift["outputs"]
    found = output["detections"]
    assert found["layout"] == layout  # recognised from the shape and values alone
    assert found["float_detections"] >= 20
    assert found["recall"] < 0.9
    scores = [c for c in output["channels"] if c["start"] >= 4]
    assert {c["axis"] for c in output["channels"]} == {AXIS[layout]}
    assert len(output["channels"]) == 7  # 4 box rows and 3 score rows, not 64 anchors
    assert any(c["sqnr_db"] < 10 for c in scores), [(c["name"], c["sqnr_db"]) for c in scores]
    recall = [f for f in drift["failures"] if "detection recall of 'output0'" in f]
    assert len(recall) == len(drift["paths"])  # every execution path loses them
    assert "detection recall of 'output0'" in result.stdout


@pytest.mark.parametrize("target", ["onnx", "tflite", "coreml"])
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_the_scores_of_a_mixed_range_output_are_kept(
    run_cli: Callable[..., CliResult], tmp_path: Path, layout: str, target: str
) -> None:
    """Boxes (0..640) and scores (0..1) in one tensor: the backend finds the range ratio on
    calibration samples (226 here) and gives the output, its layout ops and the concat's
    inputs 16-bit activations (onnx: QDQ tensor overrides; tflite: ai-edge-quantizer's 16x8
    ops, the output int16; coreml computes activations in fp16 and needs none). With one int8
    scale, recall of the float detections was below 90% (the test above); the detector
    issue's goal is >= 95% (measured: onnx 97.5%, tflite 95.7%, coreml 99.4%)."""
    savedmodel_yolo_head(tmp_path / "yolo", layout)
    write_gray_images(tmp_path / "calib", 60, (8, 8))
    result = run_cli(
        "-q", "build", "yolo", "-t", target, "-c", "calib", "-n", "40",
        "--min-agreement", "off", "--max-drop", "off",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    bundle = tmp_path / "bundles" / f"yolo-{target}"
    manifest = json.loads((bundle / "manifest.json").read_text())
    if target != "coreml":
        mixed = next(iter(manifest["model"]["mixed_range_outputs"].values()))
        assert mixed["axis"] == AXIS[layout]
        assert mixed["range_ratio"] > 16
        assert len(mixed["int16_tensors"]) >= 3  # the output, the layout ops, concat inputs
    if target == "tflite":
        assert manifest["outputs"][0]["dtype"] == "int16"
        assert manifest["model"]["float_ops"] == []
    drift = json.loads((bundle / "drift.json").read_text())
    assert portable_figures(manifest)["verdict"] == "pass"
    (output,) = drift["outputs"]
    assert output["detections"]["float_detections"] >= 100
    assert output["detections"]["recall"] >= 0.95
    assert not [c for c in output["channels"] if c["start"] >= 4 and c["sqnr_db"] < 20]
