"""Bad input gives one line on stderr, a distinct exit code, no traceback and no bundle."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from edgepack.errors import EXIT_CONVERSION, EXIT_EXISTS, EXIT_INPUT
from tests.conftest import (
    DIGITS_CALIB,
    DIGITS_MODEL,
    CliResult,
    assert_one_line_error,
    assert_valid_manifest,
    folder_is_empty,
    write_gray_images,
)
from tests.integration.models import control_flow_onnx, conv_onnx, stateful_gru_onnx

Run = Callable[..., CliResult]


def build(run_cli: Run, model: Path | str, calib: Path | str, *extra: str) -> CliResult:
    return run_cli(
        "-q", "build", model, "--target", "tflite", "--calib", calib, "--out", "out", *extra
    )


def test_missing_model(run_cli: Run, tmp_path: Path) -> None:
    assert_one_line_error(
        build(run_cli, "nope.keras", DIGITS_CALIB), EXIT_INPUT, "no such model file"
    )
    assert folder_is_empty(tmp_path / "out")


def test_corrupt_keras_file(run_cli: Run, tmp_path: Path) -> None:
    (tmp_path / "bad.keras").write_bytes(b"this is not a zip archive")
    assert_one_line_error(
        build(run_cli, "bad.keras", DIGITS_CALIB), EXIT_INPUT, "not a loadable Keras model"
    )
    assert folder_is_empty(tmp_path / "out")


def test_truncated_keras_file(run_cli: Run, tmp_path: Path) -> None:
    data = DIGITS_MODEL.read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    assert_one_line_error(build(run_cli, "cut.keras", DIGITS_CALIB), EXIT_INPUT, "cut.keras")
    assert folder_is_empty(tmp_path / "out")


def test_truncated_h5_file(run_cli: Run, tmp_path: Path) -> None:
    (tmp_path / "cut.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    assert_one_line_error(build(run_cli, "cut.h5", DIGITS_CALIB), EXIT_INPUT, "cut.h5")
    assert folder_is_empty(tmp_path / "out")


def test_corrupt_onnx_file(run_cli: Run, tmp_path: Path) -> None:
    (tmp_path / "bad.onnx").write_bytes(b"\x08\x07garbage")
    assert_one_line_error(
        build(run_cli, "bad.onnx", DIGITS_CALIB), EXIT_INPUT, "not a loadable ONNX model"
    )


def test_wrong_extension(run_cli: Run, tmp_path: Path) -> None:
    shutil.copy(DIGITS_MODEL, tmp_path / "digits.pb2")
    assert_one_line_error(
        build(run_cli, "digits.pb2", DIGITS_CALIB), EXIT_INPUT, "unknown model format '.pb2'"
    )


@pytest.mark.parametrize(
    ("name", "kind"),
    [("pitch.mlpackage", "a Core ML package"), ("digits.tflite", "a TFLite model")],
)
def test_a_deployment_format_is_not_a_source(
    run_cli: Run, tmp_path: Path, name: str, kind: str
) -> None:
    """A Core ML package (the crepe pitch tracker of ../shared/models ships only that) or a
    TFLite file: said in one line, with what to build from instead."""
    model = tmp_path / name
    if name.endswith(".mlpackage"):
        (model / "Data").mkdir(parents=True)
        (model / "Manifest.json").write_text("{}")
    else:
        model.write_bytes(b"TFL3")
    assert_one_line_error(
        build(run_cli, name, DIGITS_CALIB),
        EXIT_INPUT,
        f"{kind} is a deployment format",
        "float original",
    )


def test_folder_that_is_not_a_savedmodel(run_cli: Run, tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    assert_one_line_error(build(run_cli, "folder", DIGITS_CALIB), EXIT_INPUT, "not a SavedModel")


def test_empty_calibration_folder(run_cli: Run, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "calibration.toml").write_text("")
    assert_one_line_error(build(run_cli, DIGITS_MODEL, "empty"), EXIT_INPUT, "empty set")
    assert folder_is_empty(tmp_path / "out")


def test_calibration_shape_mismatch(run_cli: Run, tmp_path: Path) -> None:
    write_gray_images(tmp_path / "small", 10, (6, 6))
    result = build(run_cli, DIGITS_MODEL, "small")
    assert_one_line_error(result, EXIT_INPUT, "(6, 6, 1) does not match model input 'image'")
    assert folder_is_empty(tmp_path / "out")


def test_a_size_the_graph_cannot_take(run_cli: Run, tmp_path: Path) -> None:
    """Dynamic height and width in the signature, a fixed 8 x 8 constant inside: 6 x 6 images
    make onnxruntime fail to broadcast. That is the set's size, said in one line (exit 3)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    offset = numpy_helper.from_array(np.ones((1, 8, 8, 1), np.float32), "offset")
    graph = helper.make_graph(
        [helper.make_node("Add", ["image", "offset"], ["y"])],
        "fixed_inside",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", "H", "W", 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "H", "W", 1])],
        [offset],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "fixed.onnx"))
    write_gray_images(tmp_path / "small", 10, (6, 6))
    result = build(run_cli, "fixed.onnx", "small")
    assert_one_line_error(result, EXIT_INPUT, "fixed.onnx does not run on the samples (image [")
    assert "check the set's size" in result.stderr
    assert folder_is_empty(tmp_path / "out")


def test_calibration_input_name_not_in_model(run_cli: Run, tmp_path: Path) -> None:
    write_gray_images(tmp_path / "named", 10, (8, 8), input_name="pixels")
    assert_one_line_error(
        build(run_cli, DIGITS_MODEL, "named"), EXIT_INPUT, "'pixels' is not an input of the model"
    )


def test_unknown_target(run_cli: Run, tmp_path: Path) -> None:
    result = run_cli("-q", "build", DIGITS_MODEL, "-t", "coreml-ultra", "-c", DIGITS_CALIB)
    assert_one_line_error(result, 2, "unknown target 'coreml-ultra'")
    assert folder_is_empty(tmp_path / "bundles")


def test_existing_bundle_without_force(run_cli: Run, tmp_path: Path) -> None:
    (tmp_path / "out" / "digits-tflite").mkdir(parents=True)
    (tmp_path / "out" / "digits-tflite" / "keep.txt").write_text("mine")
    assert_one_line_error(build(run_cli, DIGITS_MODEL, DIGITS_CALIB), EXIT_EXISTS, "--force")
    assert [p.name for p in (tmp_path / "out" / "digits-tflite").iterdir()] == ["keep.txt"]


def test_op_that_cannot_be_integer_is_named(run_cli: Run, tmp_path: Path) -> None:
    from tests.integration.models import savedmodel_with_cumsum

    savedmodel_with_cumsum(tmp_path / "cumsum")
    write_gray_images(tmp_path / "calib", 20, (6, 6), classes=3)
    result = build(run_cli, "cumsum", "calib")
    assert_one_line_error(result, EXIT_CONVERSION, "full integer: CUMSUM")
    assert folder_is_empty(tmp_path / "out")


def test_float_fallback_when_the_profile_allows_it(run_cli: Run, tmp_path: Path) -> None:
    import json

    from tests.integration.models import savedmodel_with_cumsum

    savedmodel_with_cumsum(tmp_path / "cumsum")
    write_gray_images(tmp_path / "calib", 20, (6, 6), classes=3)
    (tmp_path / "edgepack.toml").write_text(
        "[targets.tflite.settings]\nallow_float_fallback = true\n"
        "[targets.tflite.drift]\nmin_agreement = 'off'\nmax_drop = 'off'\nmin_sqnr = 'off'\n"
    )
    result = build(run_cli, "cumsum", "calib")
    assert result.exit_code == 0, result.stderr
    manifest = json.loads((tmp_path / "out" / "cumsum-tflite" / "manifest.json").read_text())
    assert_valid_manifest(manifest)
    assert "CUMSUM" in manifest["model"]["float_ops"]
    assert manifest["target"]["settings"]["allow_float_fallback"] is True


@pytest.mark.parametrize(
    "flag", [["--num-calib", "0"], ["--max-drop", "2"], ["--min-agreement", "abc"]]
)
def test_bad_option_values(run_cli: Run, flag: list[str]) -> None:
    assert_one_line_error(build(run_cli, DIGITS_MODEL, DIGITS_CALIB, *flag), 2)


def test_an_unknown_tune_precision_is_refused_before_any_work(run_cli: Run, tmp_path: Path) -> None:
    result = build(run_cli, DIGITS_MODEL, DIGITS_CALIB, "--tune", "--tune-precisions", "int4")
    assert_one_line_error(
        result, 2, "tune.precisions: unknown precision int4 (expected int16, float)"
    )
    assert folder_is_empty(tmp_path / "out")


REFUSED_SOURCES = {
    "If": (lambda p: control_flow_onnx(p, "If"), "control flow (If ('y'))"),
    "Loop": (lambda p: control_flow_onnx(p, "Loop"), "control flow (Loop ('y'))"),
    "state": (stateful_gru_onnx, "recurrent state comes in as an input (h)"),
    "qdq": (None, "already quantized (QuantizeLinear, DequantizeLinear)"),
}


@pytest.mark.parametrize("kind", REFUSED_SOURCES)
def test_what_cannot_be_packaged_is_refused_before_any_work(
    run_cli: Run, tmp_path: Path, kind: str
) -> None:
    """Control flow, state fed in from outside and an already-quantized model: one line
    naming what was found and what to do, exit 4, on every target, before any conversion."""
    make, needle = REFUSED_SOURCES[kind]
    model = tmp_path / f"{kind}.onnx"
    if make is None:
        conv_onnx(tmp_path / "conv.onnx")
        shutil.copy(_quantized_conv(tmp_path), model)
    else:
        make(model)
    result = run_cli(
        "-q", "build", model.name, "-t", "onnx", "-t", "tflite", "-t", "coreml",
        "-c", DIGITS_CALIB, "-o", "out",
    )  # fmt: skip
    assert_one_line_error(result, EXIT_CONVERSION, needle, "unsupported")
    assert folder_is_empty(tmp_path / "out")


def _quantized_conv(folder: Path) -> Path:
    """The conv classifier quantized by onnxruntime to QDQ, as a third party would ship it."""
    import numpy as np
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.samples = iter([{"x": rng.normal(size=(1, 3, 8, 8)).astype(np.float32)}] * 4)

        def get_next(self) -> dict | None:
            return next(self.samples, None)

    target = folder / "conv-int8.onnx"
    quantize_static(str(folder / "conv.onnx"), str(target), Reader(), quant_format=QuantFormat.QDQ)
    return target
