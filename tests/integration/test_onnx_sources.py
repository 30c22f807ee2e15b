"""ONNX models as sources: into TFLite through onnx2tf (one path with Keras models) and into
the ONNX int8 target; the traps measured with onnx2tf, each tested."""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgepack.errors import EXIT_CONVERSION, EXIT_INPUT
from tests.conftest import (
    PORTABLE_PATH,
    CliResult,
    assert_one_line_error,
    assert_valid_manifest,
    folder_is_empty,
    portable_figures,
)
from tests.integration.models import audio_conv1d_onnx, conv_onnx, residual_onnx

Run = Callable[..., CliResult]

RGB_CONTRACT = """\
[preprocessing]
{size}
color = "RGB"
layout = "{layout}"
mean = [0.5, 0.5, 0.5]
std = [0.25, 0.25, 0.25]
"""


def rgb_set(folder: Path, layout: str, size: str = "size = [8, 8]", count: int = 40) -> Path:
    rng = np.random.default_rng(7)
    for i in range(count):
        target = folder / str(i % 3) / f"{i:03d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), "RGB").save(target)
    (folder / "calibration.toml").write_text(RGB_CONTRACT.format(size=size, layout=layout))
    return folder


def build_lenient(run_cli: Run, model: str, *targets: str) -> CliResult:
    """Build with 30 calibration samples and a budget a random-weight model can meet."""
    flags = [flag for target in targets for flag in ("-t", target)]
    return run_cli(
        "-q",
        "build",
        model,
        *flags,
        "-c",
        "calib",
        "--num-calib",
        "30",
        "--min-agreement",
        "90%",
        "--max-drop",
        "off",
    )


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a network connection fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def manifest(tmp_path: Path, name: str) -> dict:
    data = json.loads((tmp_path / "bundles" / name / "manifest.json").read_text())
    assert_valid_manifest(data)
    return data


def test_nchw_onnx_to_tflite_is_nhwc_offline_and_leaves_the_input_alone(
    run_cli: Run, tmp_path: Path, offline: None
) -> None:
    model = conv_onnx(tmp_path / "conv.onnx")
    rgb_set(tmp_path / "calib", "NCHW")
    before = sha(model)
    result = build_lenient(run_cli, "conv.onnx", "tflite", "onnx")
    assert result.exit_code == 0, result.stderr
    assert sha(model) == before  # onnx2tf simplifies the file it gets in place: not ours
    tflite = manifest(tmp_path, "conv-tflite")
    (image,) = tflite["inputs"]
    assert (image["shape"], image["layout"], image["transpose"]) == (
        [1, 8, 8, 3],
        "NHWC",
        [0, 2, 3, 1],
    )
    assert tflite["preprocessing"]["layout"] == "NHWC"
    assert tflite["preprocessing"]["source_layout"] == "NCHW"
    assert tflite["model"]["float_ops"] == []
    assert "onnx2tf" in tflite["versions"]
    assert tflite["drift"]["min_sqnr_db"] > 25.0
    onnx_bundle = manifest(tmp_path, "conv-onnx")
    assert onnx_bundle["inputs"][0]["shape"] == [-1, 3, 8, 8]
    assert onnx_bundle["inputs"][0]["dtype"] == "float32"
    assert onnx_bundle["model"]["ops"]["QuantizeLinear"] >= 3
    # asserted on the path that computes the same on every CPU (the fused one measured
    # 17.08 dB on an AVX2-only EPYC, above 25 dB on AVX-512 VNNI)
    (unoptimized,) = [p for p in onnx_bundle["drift"]["paths"] if p["name"] == "unoptimized"]
    assert unoptimized["min_sqnr_db"] > 25.0
    # the drift check of a transposed bundle feeds the source layout and transposes itself
    check = run_cli(
        "-q", "check", "bundles/conv-tflite", "--data", "calib", "--min-agreement", "90%"
    )
    assert check.exit_code == 0, check.stderr


def test_nhwc_onnx_input_keeps_its_layout(run_cli: Run, tmp_path: Path, offline: None) -> None:
    conv_onnx(tmp_path / "nhwc.onnx", layout="NHWC")
    rgb_set(tmp_path / "calib", "NHWC")
    result = build_lenient(run_cli, "nhwc.onnx", "tflite")
    assert result.exit_code == 0, result.stderr
    (image,) = manifest(tmp_path, "nhwc-tflite")["inputs"]
    # without keep_nwc_or_nhwc_or_ndhwc_input_names onnx2tf would make this [1, 8, 3, 8]
    assert (image["shape"], image["layout"], image["transpose"]) == ([1, 8, 8, 3], "NHWC", None)


def test_fixed_batch_of_one_is_fed_one_sample_at_a_time(run_cli: Run, tmp_path: Path) -> None:
    """Exports often fix the batch at 1; the build's checks feed 10 held-out samples and
    ``check`` feeds 40, one slice of the model's batch size at a time, on every target."""
    conv_onnx(tmp_path / "fixed.onnx", batch=1)
    rgb_set(tmp_path / "calib", "NCHW")
    result = build_lenient(run_cli, "fixed.onnx", "onnx", "tflite", "coreml")
    assert result.exit_code == 0, result.stderr
    for target in ("onnx", "tflite", "coreml"):
        bundle = manifest(tmp_path, f"fixed-{target}")
        assert bundle["inputs"][0]["shape"][0] == 1
        assert bundle["drift"]["samples"] == 10
        assert portable_figures(bundle)["min_sqnr_db"] > 25.0
        report = tmp_path / f"check-{target}.json"
        layers = ["--layers"] if target == "onnx" else []  # the capture runs one at a time too
        check = run_cli(
            "-q", "check", f"bundles/fixed-{target}", "--data", "calib", "--min-agreement", "90%",
            *layers, "--json", str(report),
        )  # fmt: skip
        assert check.exit_code == 0, check.stderr
        checked = json.loads(report.read_text())
        assert checked["samples"] == 40
        (portable,) = [p for p in checked["paths"] if p["name"] == PORTABLE_PATH[target]]
        assert portable["min_sqnr_db"] > 25.0
        assert bool(checked.get("layers")) == bool(layers), target


def test_old_opset_is_upgraded_before_per_channel_qdq(run_cli: Run, tmp_path: Path) -> None:
    conv_onnx(tmp_path / "old.onnx", opset=11, batch=1)  # the upgrade check feeds 8 samples
    rgb_set(tmp_path / "calib", "NCHW")
    result = build_lenient(run_cli, "old.onnx", "onnx")
    assert result.exit_code == 0, result.stderr
    model = manifest(tmp_path, "old-onnx")["model"]
    assert (model["source_opset"], model["upgraded_to_opset"]) == (11, 13)
    assert model["float_max_rel_error"] < 1e-5


def test_op_onnx2tf_cannot_convert_is_named(run_cli: Run, tmp_path: Path) -> None:
    conv_onnx(tmp_path / "lp.onnx", pool="LpPool")
    rgb_set(tmp_path / "calib", "NCHW")
    result = run_cli("-q", "build", "lp.onnx", "-t", "tflite", "-c", "calib", "--out", "out")
    assert_one_line_error(result, EXIT_CONVERSION, "onnx2tf", "LpPool")
    assert folder_is_empty(tmp_path / "out")


def test_dynamic_spatial_dims_need_a_size(run_cli: Run, tmp_path: Path) -> None:
    conv_onnx(tmp_path / "dyn.onnx", spatial=None)
    rgb_set(tmp_path / "calib", "NCHW", size="")
    result = run_cli("-q", "build", "dyn.onnx", "-t", "onnx", "-c", "calib", "--out", "out")
    assert_one_line_error(
        result, EXIT_INPUT, "dynamic spatial dimensions", "size = [height, width]"
    )
    assert folder_is_empty(tmp_path / "out")


def test_fixed_size_model_gives_the_size_when_the_contract_has_none(
    run_cli: Run, tmp_path: Path
) -> None:
    conv_onnx(tmp_path / "conv.onnx")
    rgb_set(tmp_path / "calib", "NCHW", size="")
    result = build_lenient(run_cli, "conv.onnx", "onnx")
    assert result.exit_code == 0, result.stderr
    assert manifest(tmp_path, "conv-onnx")["preprocessing"]["size"] == [8, 8]


def test_input_name_the_onnx_model_does_not_have(run_cli: Run, tmp_path: Path) -> None:
    conv_onnx(tmp_path / "conv.onnx")
    calib = rgb_set(tmp_path / "calib", "NCHW")
    (calib / "calibration.toml").write_text(
        'input = "images"\n' + RGB_CONTRACT.format(size="size = [8, 8]", layout="NCHW")
    )
    result = run_cli("-q", "build", "conv.onnx", "-t", "onnx", "-c", "calib", "--out", "out")
    assert_one_line_error(result, EXIT_INPUT, "'images' is not an input of the model", "x")
    assert folder_is_empty(tmp_path / "out")


@pytest.mark.parametrize("method", ["minmax", "percentile", "entropy"])
def test_calibration_method_is_applied_and_recorded(
    run_cli: Run, tmp_path: Path, method: str
) -> None:
    conv_onnx(tmp_path / "conv.onnx")
    rgb_set(tmp_path / "calib", "NCHW")
    result = run_cli(
        "-q",
        "build",
        "conv.onnx",
        "-t",
        "onnx",
        "-c",
        "calib",
        "--num-calib",
        "30",
        "--calib-method",
        method,
        "--min-agreement",
        "off",
        "--max-drop",
        "off",
        "--min-sqnr",
        "off",
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""  # onnxruntime's calibrators print; -q shows nothing
    recorded = manifest(tmp_path, "conv-onnx")
    assert recorded["calibration"]["method"].startswith(method)
    assert recorded["target"]["settings"]["calibration_method"] == method


def test_calibration_method_tflite_cannot_do(run_cli: Run, tmp_path: Path) -> None:
    conv_onnx(tmp_path / "conv.onnx")
    rgb_set(tmp_path / "calib", "NCHW")
    result = run_cli(
        "-q", "build", "conv.onnx", "-t", "tflite", "-c", "calib", "--calib-method", "entropy"
    )
    assert_one_line_error(result, 2, "min/max ranges only")


def test_onnx_x86_profile_quantizes_activations_to_uint8(run_cli: Run, tmp_path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    conv_onnx(tmp_path / "conv.onnx")
    rgb_set(tmp_path / "calib", "NCHW")
    result = build_lenient(run_cli, "conv.onnx", "onnx-x86")
    assert result.exit_code == 0, result.stderr
    recorded = manifest(tmp_path, "conv-onnx-x86")
    assert recorded["target"]["settings"]["activation_dtype"] == "uint8"
    graph = onnx.load(str(tmp_path / "bundles" / "conv-onnx-x86" / "model.onnx")).graph
    initializers = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    activation_zero_points = {
        str(initializers[node.input[2]].dtype)
        for node in graph.node
        if node.op_type == "QuantizeLinear" and len(node.input) > 2
    }
    assert activation_zero_points == {"uint8"}


def test_onnx2tf_alternatives_recover_a_conversion(run_cli: Run, tmp_path: Path) -> None:
    """onnx2tf reads the audio CNN's [1, 4096, 1] input as channels-first and writes a model
    that cannot run ("Computed output size would be negative"): that stopped tflite and
    coreml with an internal error. Keeping the input shape as it is (-kat) converts it
    (measured on both; coreml goes through the same TF view)."""
    audio_conv1d_onnx(tmp_path)
    (tmp_path / "tflite-cpu.toml").write_text(  # the converter leaves LOG float here
        '[profile]\nname = "tflite-cpu"\nextends = "tflite"\ndescription = "CPU fallback"\n'
        "[settings]\nallow_float_fallback = true\n"
    )
    result = run_cli(
        "-q", "build", "audio.onnx", "-t", "tflite-cpu.toml", "-c", "calib",
        "--min-agreement", "off", "--max-drop", "off", "--min-sqnr", "off",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    for target in ("tflite-cpu",):  # coreml goes through the same TF view
        record = manifest(tmp_path, f"audio-{target}")["model"]["onnx2tf"]
        assert record["worked"] == "input shapes kept as they are (-kat)"
        (failed,) = record["tried"]
        assert failed["name"] == "the contract's layouts"
        assert "Computed output size would be negative" in failed["failure"]
        assert record["float_max_rel_error"] < 1e-3


@pytest.mark.parametrize("target", ["tflite", "coreml"])
def test_layers_of_an_onnx_source_pair_every_op(run_cli: Run, tmp_path: Path, target: str) -> None:
    """The bundle and its float twin are two onnx2tf conversions in one process: their
    tensors must carry the same names (onnx2tf's layer names once numbered on from the
    first conversion, and only the model's output paired), so every op is measured."""
    conv_onnx(tmp_path / "conv.onnx")
    rgb_set(tmp_path / "calib", "NCHW")
    report = tmp_path / "build.json"
    result = run_cli(
        "-q", "build", "conv.onnx", "-t", target, "-c", "calib", "--num-calib", "30",
        "--min-agreement", "90%", "--max-drop", "off", "--layers", "--json", str(report),
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    (checked,) = json.loads(report.read_text())["targets"]
    layers = checked["layers"]
    # Conv+Relu, the pooling, the Gemm and the Softmax at least; the output alone before
    assert len(layers["layers"]) >= 4, [d["tensor"] for d in layers["layers"]]
    assert all(d["sqnr_db"] > 20.0 for d in layers["layers"]), layers["layers"]


@pytest.mark.parametrize("activations", ["symmetric", "asymmetric"])
def test_coreml_w8a8_activations_and_residual_adds_in_float_units(
    run_cli: Run, tmp_path: Path, activations: str
) -> None:
    """w8a8 activations symmetric or with a zero point; and the residual add, which
    coremltools computes in units of one input's scale, is measured in float units (it
    read -31 dB on ppocr_cls before: a scale, not an error)."""
    from coremltools.converters.mil.frontend.milproto.load import load
    from coremltools.models import MLModel

    residual_onnx(tmp_path / "residual.onnx")
    rgb_set(tmp_path / "calib", "NCHW")
    report = tmp_path / "build.json"
    result = run_cli(
        "-q", "build", "residual.onnx", "-t", "coreml", "-c", "calib", "--num-calib", "30",
        "--set", "quantize=w8a8", "--set", f"activations={activations}",
        "--min-agreement", "90%", "--max-drop", "off", "--layers", "--json", str(report),
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    bundle = manifest(tmp_path, "residual-coreml")
    assert bundle["calibration"]["method"].startswith(f"minmax, {activations}")
    package = MLModel(
        str(tmp_path / "bundles" / "residual-coreml" / bundle["model"]["file"]),
        skip_model_load=True,
    )
    spec = package.get_spec()
    program = load(spec, spec.specificationVersion, package.weights_dir)
    quantizes = [op for op in program.functions["main"].operations if op.op_type == "quantize"]
    assert len(quantizes) >= 3
    with_zero_point = [op for op in quantizes if op.zero_point is not None]
    assert bool(with_zero_point) == (activations == "asymmetric")
    (checked,) = json.loads(report.read_text())["targets"]
    layers = checked["layers"]
    adds = [d for d in layers["layers"] if "add" in d["tensor"].lower()]
    assert adds, [d["tensor"] for d in layers["layers"]]
    assert all(d["sqnr_db"] > 15.0 for d in layers["layers"]), layers["layers"]
    assert "brought back to float units" in layers["matching"]


def test_a_tuned_build_converts_the_onnx_model_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """onnx2tf and coremltools run once per model and settings in a process: the SavedModel
    is reused (checked again on each call's samples) while the prepared file is the same,
    and converted again when it changes."""
    from edgepack import api
    from edgepack.backends import coreml
    from edgepack.convert import onnx_to_tf

    conversions: list[Path] = []
    run = onnx_to_tf._run_onnx2tf

    def counted(model: Path, output: Path, options: dict) -> None:
        conversions.append(model)
        run(model, output, options)

    monkeypatch.setattr(onnx_to_tf, "_run_onnx2tf", counted)
    monkeypatch.setattr(onnx_to_tf, "CONVERTED", onnx_to_tf.RecentResults())
    monkeypatch.setattr(coreml, "CONVERTED", coreml.RecentResults())
    residual_onnx(tmp_path / "residual.onnx")
    rgb_set(tmp_path / "calib", "NCHW", count=80)
    (tmp_path / "edgepack.toml").write_text("[tune]\nfolds = 2\n")
    options = {
        "num_calib": 80, "min_agreement": "90%", "max_drop": "off", "environ": {},
        "cwd": tmp_path,
    }  # fmt: skip
    (result,) = api.build(
        tmp_path / "residual.onnx", ["coreml"], tmp_path / "calib", out=tmp_path / "a",
        tune=True, **options,
    )  # fmt: skip
    candidates = result.manifest["tuning"]["candidates"]
    assert result.manifest["tuning"]["folds"] == 2
    assert len(candidates) == 2 and len(conversions) == 1  # 2 candidates x 2 folds + final
    conv_onnx(tmp_path / "residual.onnx")  # another model at the same path
    api.build(tmp_path / "residual.onnx", ["coreml"], tmp_path / "calib", out=tmp_path / "b",
              **options)  # fmt: skip
    assert len(conversions) == 2
