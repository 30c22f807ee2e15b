"""build --eval: the drift check runs on an evaluation set and every calibration sample
calibrates; without one a part of the calibration set is held out, and the table says which."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from edgepack import api
from tests.conftest import (
    CliResult,
    assert_one_line_error,
    assert_valid_manifest,
    folder_is_empty,
    write_gray_images,
)


@pytest.fixture
def eval_set(tmp_path: Path) -> Path:
    return write_gray_images(tmp_path / "eval", 30, (6, 6), classes=3, seed=5)


def test_build_checks_on_the_evaluation_set_and_calibrates_on_all(
    run_cli: Callable[..., CliResult], tiny: dict[str, Path], eval_set: Path, tmp_path: Path
) -> None:
    result = run_cli(
        "build", tiny["model"], "-t", "onnx", "-c", tiny["calib"], "--eval", eval_set,
        "-o", tmp_path / "out", "--min-agreement", "off", "--max-drop", "off",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    manifest = json.loads((tmp_path / "out" / "tiny-onnx" / "manifest.json").read_text())
    assert_valid_manifest(manifest)
    assert manifest["calibration"]["samples"] == 40 == manifest["calibration"]["set_size"]
    assert manifest["calibration"]["held_out"] == 0
    assert manifest["drift"]["samples"] == 30
    assert manifest["drift"]["data"]["split"] == "evaluation set"
    recorded = manifest["drift"]["data"]["path"]  # no build-host folder in a bundle
    assert not Path(recorded).is_absolute() and recorded.endswith(eval_set.name)
    drift = json.loads((tmp_path / "out" / "tiny-onnx" / "drift.json").read_text())
    assert drift["samples"] == 30 and drift["data"]["path"] == recorded
    assert "calibrated on 40 samples; verdict on 30 samples evaluation set" in result.stdout
    assert "one sample = 3.33%" in result.stdout


def test_without_an_evaluation_set_the_table_says_samples_were_held_out(
    run_cli: Callable[..., CliResult], tiny: dict[str, Path], tmp_path: Path
) -> None:
    result = run_cli(
        "build", tiny["model"], "-t", "onnx", "-c", tiny["calib"], "-o", tmp_path / "out",
        "--min-agreement", "off", "--max-drop", "off",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    manifest = json.loads((tmp_path / "out" / "tiny-onnx" / "manifest.json").read_text())
    assert (manifest["calibration"]["samples"], manifest["calibration"]["held_out"]) == (32, 8)
    assert manifest["drift"]["data"]["split"] == "held-out part of the calibration set"
    assert "verdict on 8 samples held out from the calibration set" in result.stdout


def test_failures_name_their_path_in_the_build_table(
    run_cli: Callable[..., CliResult], tiny: dict[str, Path], eval_set: Path, tmp_path: Path
) -> None:
    """A failure line starts with its path in brackets; the table must print it, not eat it
    as markup."""
    result = run_cli(
        "build", tiny["model"], "-t", "onnx", "-c", tiny["calib"], "--eval", eval_set,
        "-o", tmp_path / "out", "--min-sqnr", "150",
    )  # fmt: skip
    assert result.exit_code == 1, result.stderr
    assert "onnx: [optimized] SQNR" in result.stdout
    assert "onnx: [unoptimized] SQNR" in result.stdout


def test_the_config_names_the_evaluation_set_relative_to_itself(
    tiny: dict[str, Path], eval_set: Path, tmp_path: Path
) -> None:
    (tmp_path / "edgepack.toml").write_text('[drift]\neval = "eval"\n')
    work = tmp_path / "sub"
    work.mkdir()
    results = api.build(
        tiny["model"], ["onnx"], tiny["calib"], out=tmp_path / "out", cwd=work, environ={},
        min_agreement="off", max_drop="off",
    )  # fmt: skip
    assert results[0].manifest["drift"]["data"]["path"].endswith(eval_set.name)
    assert results[0].manifest["calibration"]["held_out"] == 0


def test_the_environment_names_the_evaluation_set(
    tiny: dict[str, Path], eval_set: Path, tmp_path: Path
) -> None:
    results = api.build(
        tiny["model"], ["onnx"], tiny["calib"], out=tmp_path / "out", cwd=tmp_path,
        environ={"EDGEPACK_EVAL": str(eval_set)}, min_agreement="off", max_drop="off",
    )  # fmt: skip
    assert results[0].report.samples == 30


def test_evaluation_labels_follow_the_bundle_class_order(
    tiny: dict[str, Path], tmp_path: Path
) -> None:
    """An evaluation set with two of the three classes: its label indices are mapped into the
    calibration set's class order, so accuracy is measured on the right classes."""
    subset = write_gray_images(tmp_path / "two", 20, (6, 6), classes=3, seed=7)
    for image in (subset / "0").iterdir():
        image.unlink()
    (subset / "0").rmdir()
    result = api.build(
        tiny["model"], ["onnx"], tiny["calib"], eval=subset, out=tmp_path / "out",
        cwd=tmp_path, environ={}, min_agreement="off", max_drop="off",
    )[0]  # fmt: skip
    report = result.report
    assert report.samples == 13  # classes 1 and 2 of 20 images
    assert report.accuracy_float is not None
    import numpy as np

    from edgepack.calib.dataset import open_sample_set
    from edgepack.frontends import load_source

    source = load_source(tiny["model"])
    evaluation = open_sample_set(subset)
    bound = evaluation.bind(source.inputs)
    refs = evaluation.take(500, 0)
    predicted = np.argmax(source.run(bound.load(refs))["scores"], axis=1)
    truth = np.array([int(evaluation.label_names[ref.label]) for ref in refs])
    assert report.accuracy_float == pytest.approx(float(np.mean(predicted == truth)))


def test_an_evaluation_set_with_other_preprocessing_is_refused(
    run_cli: Callable[..., CliResult], tiny: dict[str, Path], tmp_path: Path
) -> None:
    other = write_gray_images(tmp_path / "other", 10, (6, 6), classes=3)
    contract = other / "calibration.toml"
    contract.write_text(contract.read_text().replace('resize = "nearest"', 'resize = "bilinear"'))
    result = run_cli(
        "-q", "build", tiny["model"], "-t", "onnx", "-c", tiny["calib"], "--eval", other,
        "-o", tmp_path / "out",
    )  # fmt: skip
    assert_one_line_error(result, 3, "preprocessing differs from the calibration set's")
    assert folder_is_empty(tmp_path / "out")


def test_an_evaluation_set_with_unknown_labels_is_refused(
    run_cli: Callable[..., CliResult], tiny: dict[str, Path], tmp_path: Path
) -> None:
    more = write_gray_images(tmp_path / "more", 20, (6, 6), classes=4)
    result = run_cli(
        "-q", "build", tiny["model"], "-t", "onnx", "-c", tiny["calib"], "--eval", more,
        "-o", tmp_path / "out",
    )  # fmt: skip
    assert_one_line_error(result, 3, "labels ['3'] are not among the calibration set's labels")


def test_a_missing_evaluation_folder_is_one_line(
    run_cli: Callable[..., CliResult], tiny: dict[str, Path], tmp_path: Path
) -> None:
    result = run_cli(
        "-q", "build", tiny["model"], "-t", "onnx", "-c", tiny["calib"], "--eval",
        tmp_path / "nope", "-o", tmp_path / "out",
    )  # fmt: skip
    assert_one_line_error(result, 3, "no such calibration or evaluation folder")
