"""build --tune: the calibration search finds the choice that holds on data the profile's own
choice mishandles, records every candidate, and gives the same bundle every time."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edgepack import api
from tests.conftest import CliResult, assert_one_line_error, assert_valid_manifest

OFF = {"min_agreement": "off", "max_drop": "off"}
# The paths whose arithmetic is the same on every CPU (AVX2, AVX-512, ARM): the search and the
# verdict both read them, so the choices and bounds below hold on any host.
PORTABLE = {"onnx": ["unoptimized"], "tflite": ["reference"]}
SPIKE = 300.0


@pytest.fixture(scope="module")
def spiky(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small conv net, an evaluation set of N(0, 1) arrays, and a calibration set of the
    same kind in which one sample, one that calibrates (the first after the seed-0 shuffle),
    has a single value of 300: min-max ranges stretch to it, percentile and entropy do not."""
    import keras

    root = tmp_path_factory.mktemp("spiky")
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            keras.Input((16, 16, 1), name="x"),
            keras.layers.Conv2D(8, 3, activation="relu", name="conv"),
            keras.layers.GlobalAveragePooling2D(name="pool"),
            keras.layers.Dense(4, name="scores"),
        ]
    )
    model.save(root / "spiky.keras")
    rng = np.random.default_rng(7)
    for name, count in (("calib", 80), ("eval", 40)):
        folder = root / name
        folder.mkdir()
        data = rng.normal(size=(count, 16, 16, 1)).astype(np.float32)
        if name == "calib":
            data[int(np.random.default_rng(0).permutation(count)[0]), 5, 5, 0] = SPIKE
        np.save(folder / "samples.npy", data)
        (folder / "calibration.toml").write_text('input = "x"\n')
    return {"model": root / "spiky.keras", "calib": root / "calib", "eval": root / "eval"}


def _build(spiky: dict[str, Path], out: Path, **options: object) -> api.BuildResult:
    return api.build(
        spiky["model"], ["onnx"], spiky["calib"], eval=spiky["eval"], out=out,
        paths=PORTABLE["onnx"], cwd=out.parent, environ={}, **OFF,
        **options,  # type: ignore[arg-type]
    )[0]  # fmt: skip


def test_the_search_keeps_a_method_that_ignores_the_outlier_and_the_verdict_improves(
    spiky: dict[str, Path], tmp_path: Path
) -> None:
    default = _build(spiky, tmp_path / "default")
    tuned = _build(spiky, tmp_path / "tuned", tune=True)
    assert_valid_manifest(tuned.manifest)
    assert default.manifest["tuning"] is None
    tuning = tuned.manifest["tuning"]
    assert len(tuning["candidates"]) == 8 and tuning["stopped"] is None
    assert tuning["candidates"][0]["name"] == "minmax, per-channel weights"
    chosen = next(t for t in tuning["candidates"] if t["name"] == tuning["chosen"])
    assert chosen["settings"]["calibration_method"] in ("percentile", "entropy")
    assert tuning["candidates"][0]["min_sqnr_db"] < 30.0 < chosen["min_sqnr_db"]
    # measured on the evaluation set, which the search never saw
    assert default.report.min_sqnr_db < 30.0
    assert tuned.report.min_sqnr_db > default.report.min_sqnr_db + 10.0
    settings = tuned.manifest["target"]["settings"]
    assert settings["calibration_method"] == chosen["settings"]["calibration_method"]
    assert tuned.manifest["calibration"]["samples"] == 80  # the bundle calibrates on all
    assert (tuning["calibration_samples"], tuning["validation_samples"]) == (64, 80)


def test_a_tuned_build_is_the_same_bundle_in_another_process(
    spiky: dict[str, Path], tmp_path: Path
) -> None:
    (tmp_path / "edgepack.toml").write_text("[tune]\nfolds = 2\nmax_candidates = 4\n")
    first = _build(spiky, tmp_path / "first", tune=True)
    script = (
        "from edgepack import api\n"
        f"api.build({str(spiky['model'])!r}, ['onnx'], {str(spiky['calib'])!r}, "
        f"eval={str(spiky['eval'])!r}, out={str(tmp_path / 'again')!r}, tune=True, "
        "paths=['unoptimized'], min_agreement='off', max_drop='off', environ={}, "
        f"cwd={str(tmp_path)!r})\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "4321"}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, capture_output=True)
    again = json.loads((tmp_path / "again" / "spiky-onnx" / "manifest.json").read_text())
    assert again["model"]["sha256"] == first.manifest["model"]["sha256"]
    assert again["tuning"]["chosen"] == first.manifest["tuning"]["chosen"]
    names = [t["name"] for t in again["tuning"]["candidates"]]
    assert names == [t["name"] for t in first.manifest["tuning"]["candidates"]]
    assert len(names) == 4 and again["tuning"]["folds"] == 2


def test_tune_from_the_cli_prints_what_the_search_kept(
    run_cli: Callable[..., CliResult], spiky: dict[str, Path], tmp_path: Path
) -> None:
    result = run_cli(
        "build", spiky["model"], "-t", "onnx", "-c", spiky["calib"], "--eval", spiky["eval"],
        "-o", tmp_path / "out", "--tune", "--min-agreement", "off", "--max-drop", "off",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    text = " ".join(result.stdout.split())  # the console wraps long lines
    assert "onnx: calibration search kept " in text
    assert "profile's own minmax, per-channel weights: " in text
    assert "8 candidates on 80 validation samples" in text
    # the default bundle measured beside the tuned one, on the 40 evaluation samples
    assert re.search(r"onnx: default -> tuned on 40 evaluation samples: [\d.]+ dB", text)
    assert re.search(r"size x[\d.]+, host latency x[\d.]+ \(optimized path\)", text)
    shown = run_cli("inspect", tmp_path / "out" / "spiky-onnx")
    assert shown.exit_code == 0, shown.stderr
    shown_text = " ".join(shown.stdout.split())
    assert "calibration search kept " in shown_text
    assert "default -> tuned on 40 evaluation samples" in shown_text


def test_max_candidates_from_the_config_bounds_the_search(
    spiky: dict[str, Path], tmp_path: Path
) -> None:
    (tmp_path / "edgepack.toml").write_text("[tune]\nenabled = true\nmax_candidates = 3\n")
    result = api.build(
        spiky["model"], ["onnx"], spiky["calib"], eval=spiky["eval"], out=tmp_path / "out",
        paths=PORTABLE["onnx"], cwd=tmp_path, environ={}, **OFF,  # type: ignore[arg-type]
    )[0]  # fmt: skip
    tuning = result.manifest["tuning"]
    assert len(tuning["candidates"]) == 3
    assert tuning["stopped"] == "max_candidates = 3 reached"


def test_too_few_calibration_samples_to_validate_on_is_a_one_line_error(
    run_cli: Callable[..., CliResult], spiky: dict[str, Path], tmp_path: Path
) -> None:
    result = run_cli(
        "build", spiky["model"], "-t", "onnx", "-c", spiky["calib"], "--eval", spiky["eval"],
        "-o", tmp_path / "out", "--tune", "-n", "20", "-q",
    )  # fmt: skip
    assert_one_line_error(result, 2, "tuning needs a validation part of the calibration set")
    assert not (tmp_path / "out" / "spiky-onnx").exists()


@pytest.fixture(scope="module")
def fragile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The fragile-layer model of the per-layer tests (one output channel of layer
    ``fragile`` 300 times the others, ignored by the next layer), with gray images."""
    from tests.conftest import write_gray_images
    from tests.integration.test_layers import fragile_keras_model

    root = tmp_path_factory.mktemp("fragile")
    model = fragile_keras_model(root / "fragile.keras")
    return {
        "model": model,
        "calib": write_gray_images(root / "calib", 96, (8, 8), classes=3),
        "eval": write_gray_images(root / "eval", 40, (8, 8), classes=3, seed=11),
    }


def _fragile_build(
    fragile: dict[str, Path], out: Path, target: str = "onnx", **options: object
) -> api.BuildResult:
    return api.build(
        fragile["model"], [target], fragile["calib"], eval=fragile["eval"], out=out,
        paths=PORTABLE[target], cwd=out.parent, environ={}, **OFF,
        **options,  # type: ignore[arg-type]
    )[0]  # fmt: skip


@pytest.mark.parametrize(
    ("target", "floor_db", "gain_db"), [("onnx", 25.0, 20.0), ("tflite", 20.0, 15.0)]
)
def test_mixed_precision_widens_the_fragile_layer_and_the_budget_holds(
    fragile: dict[str, Path], tmp_path: Path, target: str, floor_db: float, gain_db: float
) -> None:
    # the profile's own calibration choice only: this test is about the layers
    (tmp_path / "edgepack.toml").write_text("[tune]\nmax_candidates = 1\n")
    default = _fragile_build(fragile, tmp_path / "default", target)
    tuned = _fragile_build(fragile, tmp_path / "tuned", target, tune=True)
    assert_valid_manifest(tuned.manifest)
    assert not default.passed and default.report.min_sqnr_db < 10.0
    precision = tuned.manifest["tuning"]["precision"]
    assert precision["ranked"][0]["layer"] == "fragile"
    assert precision["ranked"][0]["own_share_db"] > 10.0
    first = precision["ranked"][0]["own_share_db"]
    assert all(r["own_share_db"] < first / 5 for r in precision["ranked"][1:])
    assert precision["layers"] == {"fragile": "int16"} and precision["holds"]
    assert tuned.manifest["model"]["precision"] == {"fragile": "int16"}
    counts = tuned.manifest["model"]["precision_counts"]
    assert counts["int16"] >= 1 and counts["int8"] >= 3
    # on the evaluation set, never seen by the search, on every execution path
    assert tuned.passed and tuned.report.min_sqnr_db > floor_db
    assert tuned.report.min_sqnr_db > default.report.min_sqnr_db + gain_db


def test_when_the_limit_allows_no_widening_the_build_fails_and_names_the_layers(
    run_cli: Callable[..., CliResult], fragile: dict[str, Path], tmp_path: Path
) -> None:
    (tmp_path / "edgepack.toml").write_text(
        "[tune]\nmax_wide_fraction = 0\nmax_candidates = 1\nfolds = 2\n"
    )
    result = run_cli(
        "build", fragile["model"], "-t", "onnx", "-c", fragile["calib"], "--eval",
        fragile["eval"], "-o", tmp_path / "out", "--tune", "--min-agreement", "off",
        "--max-drop", "off",
    )  # fmt: skip
    assert result.exit_code == 1, result.stderr
    text = " ".join(result.stdout.split())
    assert "mixed precision could not hold the budget" in text
    assert "the limit of 0 widened layers reached" in text
    assert "would also have to be widened or go float: fragile" in text
    manifest = json.loads((tmp_path / "out" / "fragile-onnx" / "manifest.json").read_text())
    assert manifest["tuning"]["precision"]["trials"] == []
    assert "precision" not in manifest["model"]


def test_k_fold_validation_scores_every_calibration_sample_once(
    spiky: dict[str, Path], tmp_path: Path
) -> None:
    (tmp_path / "edgepack.toml").write_text(
        "[tune]\nenabled = true\nfolds = 4\nmax_candidates = 4\n"
    )
    result = api.build(
        spiky["model"], ["onnx"], spiky["calib"], eval=spiky["eval"], out=tmp_path / "out",
        paths=PORTABLE["onnx"], cwd=tmp_path, environ={}, **OFF,  # type: ignore[arg-type]
    )[0]  # fmt: skip
    assert_valid_manifest(result.manifest)
    tuning = result.manifest["tuning"]
    assert tuning["folds"] == 4
    assert (tuning["calibration_samples"], tuning["validation_samples"]) == (60, 80)
    # the fold holding the outlier calibrates min-max on it three times out of four
    scores = {t["name"]: t["min_sqnr_db"] for t in tuning["candidates"]}
    assert scores["minmax, per-channel weights"] < scores["percentile 99.99, per-channel weights"]


def test_samples_of_one_group_stay_in_one_fold(spiky: dict[str, Path], tmp_path: Path) -> None:
    """21 groups of 4 samples (files g00.npy .. g20.npy) in 5 folds: the first fold's cut
    moves from sample 17 (84 / 5, rounded) to the group boundary at 16, so 68 samples
    calibrate its bundle; every group is resampled as one."""
    calib = tmp_path / "grouped"
    calib.mkdir()
    rng = np.random.default_rng(3)
    for group in range(21):
        np.save(calib / f"g{group:02d}.npy", rng.normal(size=(4, 16, 16, 1)).astype(np.float32))
    (calib / "calibration.toml").write_text("input = \"x\"\ngroup = '^(g\\d+)'\n")
    (tmp_path / "edgepack.toml").write_text(
        "[tune]\nenabled = true\nfolds = 5\nmax_candidates = 1\n"
    )
    result = api.build(
        spiky["model"], ["onnx"], calib, eval=spiky["eval"], out=tmp_path / "out",
        paths=PORTABLE["onnx"], cwd=tmp_path, environ={}, **OFF,  # type: ignore[arg-type]
    )[0]  # fmt: skip
    assert_valid_manifest(result.manifest)
    tuning = result.manifest["tuning"]
    assert (tuning["calibration_samples"], tuning["validation_samples"]) == (68, 84)
    assert tuning["validation_groups"] == 21


FLOAT_RUNG_CONFIG = {
    "onnx": "",
    "tflite": "[targets.tflite.settings]\nallow_float_fallback = true\n",
    "coreml": '[targets.coreml.settings]\nquantize = "w8a8"\n',
}


@pytest.mark.parametrize("target", ["onnx", "tflite", "coreml"])
def test_a_layer_goes_float_where_the_target_allows_it_and_the_budget_holds(
    fragile: dict[str, Path], tmp_path: Path, target: str
) -> None:
    """With the ladder limited to float (as for an NPU without 16-bit kernels), the fragile
    layer is kept float: ONNX nodes left out of QDQ, TFLite float ops (CPU fallback allowed),
    Core ML W8A8 ops left out of activation and weight quantization."""
    (tmp_path / "edgepack.toml").write_text(
        "[tune]\nmax_candidates = 1\nfolds = 2\n" + FLOAT_RUNG_CONFIG[target]
    )
    paths = PORTABLE.get(target)
    tuned = api.build(
        fragile["model"], [target], fragile["calib"], eval=fragile["eval"], out=tmp_path / "o",
        paths=paths, cwd=tmp_path, environ={}, tune=True, tune_precisions="float", **OFF,
    )[0]  # fmt: skip
    manifest = tuned.manifest
    assert_valid_manifest(manifest)
    precision = manifest["tuning"]["precision"]
    assert precision["ranked"][0]["layer"] == "fragile"
    assert precision["ladder"] == [{"precision": "float", "max_layers": 1}]  # 25% of 5 layers
    assert precision["layers"] == {"fragile": "float"} and precision["holds"]
    assert manifest["model"]["precision"] == {"fragile": "float"}
    effect = manifest["tuning"]["effect"]
    default, final = effect["default"], effect["tuned"]
    # the default bundle, built and checked beside it on the same evaluation samples
    assert effect["measured_on"] == "40 evaluation samples"
    assert default["verdict"] == "fail" and default["min_sqnr_db"] < 10.0
    assert final["verdict"] == "pass" and final["min_sqnr_db"] > 25.0
    assert final["min_sqnr_db"] > default["min_sqnr_db"] + 20.0
    assert final["precision_counts"]["float"] > default["precision_counts"]["float"]
    assert final["precision_counts"]["int8"] >= 2  # the other layers stay integer
    assert tuned.passed and tuned.report.min_sqnr_db > 25.0


def test_the_tflite_npu_profile_never_goes_float(
    run_cli: Callable[..., CliResult], fragile: dict[str, Path], tmp_path: Path
) -> None:
    """Without allow_float_fallback the tflite ladder has int16 only: asked for float alone,
    there is nothing to widen to, and the build says so and fails."""
    (tmp_path / "edgepack.toml").write_text("[tune]\nmax_candidates = 1\nfolds = 2\n")
    result = run_cli(
        "build", fragile["model"], "-t", "tflite", "-c", fragile["calib"], "--eval",
        fragile["eval"], "-o", tmp_path / "out", "--tune", "--tune-precisions", "float",
        "--path", "reference", "--min-agreement", "off", "--max-drop", "off",
    )  # fmt: skip
    assert result.exit_code == 1, result.stderr
    text = " ".join(result.stderr.split())
    assert "no wider precision to raise layers to: tflite offers int16" in text
    assert "tune.precisions allows float" in text
    manifest = json.loads((tmp_path / "out" / "fragile-tflite" / "manifest.json").read_text())
    assert manifest["tuning"]["precision"] is None
    assert manifest["model"]["precision_counts"]["float"] == 0


def test_when_the_per_layer_quantizer_cannot_build_the_model_the_search_result_is_kept(
    fragile: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ai-edge-quantizer leaves some ops float that the TFLite converter quantizes (measured:
    RELU_0_TO_1 in the PaddleOCR direction classifier), so a model may have no per-layer
    build at all: the calibration search's bundle is written and the manifest says why
    nothing was widened."""
    from edgepack.backends import tflite
    from edgepack.errors import ConversionError

    def refuse(*_args: object, **_kwargs: object) -> bytes:
        raise ConversionError(
            "ops left in float, but the profile demands full integer: RELU_0_TO_1"
        )

    monkeypatch.setattr(tflite, "_quantize_per_op", refuse)
    (tmp_path / "edgepack.toml").write_text("[tune]\nmax_candidates = 1\nfolds = 2\n")
    result = _fragile_build(fragile, tmp_path / "out", "tflite", tune=True)
    assert_valid_manifest(result.manifest)
    precision = result.manifest["tuning"]["precision"]
    assert precision["stopped"] == (
        "could not run: ops left in float, but the profile demands full integer: RELU_0_TO_1"
    )
    assert precision["trials"] == [] and precision["layers"] == {}
    assert not result.passed  # the default's verdict, as it is
    assert result.manifest["tuning"]["effect"]["tuned"]["verdict"] == "fail"
