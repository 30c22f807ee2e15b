"""NPU placement: the figures each vendor tool that runs here gives for the shipped example
and for models with ops an NPU refuses, the gate (--require-npu, exit code, JUnit), the
compiled artefacts, and what is reported where a vendor library is missing.

The figures were measured with ai-edge-litert 2.3.0, onnxruntime 1.32 and onnxruntime-qnn 2.7.0
(QNN SDK 2.51) on Linux x86-64; placement changes between releases, so the bundle records them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from edgepack import api
from edgepack.errors import EXIT_CONVERSION, EXIT_DRIFT, EXIT_USAGE
from tests.conftest import (
    DIGITS_CALIB,
    DIGITS_EVAL,
    DIGITS_MODEL,
    CliResult,
    assert_one_line_error,
    assert_valid_manifest,
    write_gray_images,
)

pytest.importorskip("onnxruntime_qnn", reason="onnxruntime-qnn: Linux x86-64 and Windows wheels")

Run = Callable[..., CliResult]
NO_BUDGET = "[drift]\nmin_agreement = 'off'\nmax_drop = 'off'\nmin_sqnr = 'off'\n"


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("placement")
    results = api.build(
        DIGITS_MODEL, ["all"], DIGITS_CALIB, eval=DIGITS_EVAL, out=out, cwd=out, environ={}
    )
    return {r.target: r for r in results}


def by_device(result: api.BuildResult) -> dict:
    return {p["device"]: p for p in result.manifest["compat"]["devices"]}


def test_every_bundle_records_its_placement(digits: dict) -> None:
    for result in digits.values():
        assert_valid_manifest(result.manifest)
        compat = result.manifest["compat"]
        assert compat["require"] == [] and compat["passed"] is True and compat["failures"] == []
    assert list(by_device(digits["tflite"])) == ["SM8650", "SM8750", "mt6989", "Tensor_G4"]
    assert list(by_device(digits["onnx"])) == ["SM8650", "nnapi", "coreml-ep"]
    assert list(by_device(digits["coreml"])) == ["ane"]


def test_qualcomm_compiles_the_whole_tflite_bundle(digits: dict) -> None:
    for soc in ("SM8650", "SM8750"):
        placement = by_device(digits["tflite"])[soc]
        assert placement["kind"] == "compiler" and placement["status"] == "ok"
        assert (placement["ops_offloaded"], placement["ops_total"]) == (7, 7)
        assert placement["partitions"] == 1 and placement["cpu_ops"] == []
        assert placement["compiled"] is True and placement["compile_error"] is None
        versions = placement["versions"]
        assert versions["ai-edge-litert"].startswith("2.")
        assert versions["qualcomm_sdk"].startswith("2.")  # 2.51.0.260929181845 measured
        assert versions["qnn_libraries"].startswith("onnxruntime-qnn 2.")


def test_vendors_whose_sdk_is_missing_are_reported_not_failed(digits: dict) -> None:
    placements = by_device(digits["tflite"])
    for soc, package in (
        ("mt6989", "ai-edge-litert-sdk-mediatek"),
        ("Tensor_G4", "ai-edge-litert-sdk-google-tensor"),
    ):
        assert placements[soc]["status"] == "unavailable"
        assert package in placements[soc]["missing"]
        assert placements[soc]["ops_total"] == 0
    assert digits["tflite"].passed  # nothing required: the build passes


def test_qnn_execution_provider_takes_the_onnx_bundle_but_its_float_boundary(digits: dict) -> None:
    placement = by_device(digits["onnx"])["SM8650"]
    assert placement["tool"] == "onnxruntime QNN execution provider (HTP)"
    assert (placement["ops_offloaded"], placement["ops_total"], placement["partitions"]) == (
        33,
        41,
        1,
    )
    assert placement["compiled"] is True
    # the float input's QuantizeLinear and the output's DequantizeLinear stay on the CPU by the
    # EP's design; 6 weight DequantizeLinear nodes are folded away by onnxruntime
    assert sorted((c["op"], c["boundary"]) for c in placement["cpu_ops"]) == [
        ("DequantizeLinear", True),
        ("QuantizeLinear", True),
    ]
    assert "graph input" in " ".join(c["reason"] for c in placement["cpu_ops"])
    assert placement["versions"]["qnn_sdk"].startswith("2.")
    assert placement["notes"] == [
        "input shapes fixed to image [1, 8, 8, 1]",
        "7 nodes folded or fused away by onnxruntime before assignment",
    ]


def test_mobile_execution_provider_rules(digits: dict) -> None:
    nnapi = by_device(digits["onnx"])["nnapi"]
    assert nnapi["kind"] == "rules"
    assert (nnapi["ops_offloaded"], nnapi["ops_total"], nnapi["partitions"]) == (37, 37, 1)
    coreml_ep = by_device(digits["onnx"])["coreml-ep"]
    # onnxruntime's Core ML EP (ML program) lists no QuantizeLinear / DequantizeLinear: a QDQ
    # model is split around every quantized tensor
    assert (coreml_ep["ops_offloaded"], coreml_ep["ops_total"], coreml_ep["partitions"]) == (
        9,
        37,
        9,
    )
    assert {c["op"] for c in coreml_ep["cpu_ops"]} == {"QuantizeLinear", "DequantizeLinear"}
    assert all("is not among" in c["reason"] for c in coreml_ep["cpu_ops"])


def test_neural_engine_estimate(digits: dict) -> None:
    ane = by_device(digits["coreml"])["ane"]
    assert ane["kind"] == "estimate" and ane["status"] == "ok"
    assert (ane["ops_offloaded"], ane["ops_total"], ane["partitions"]) == (12, 14, 1)
    # the fp16 -> fp32 cast of the probabilities and the classifier's label lookup
    assert sorted((c["op"], c["boundary"]) for c in ane["cpu_ops"]) == [
        ("cast", True),
        ("classify", True),
    ]
    assert any("static estimate" in note for note in ane["notes"])


def test_inspect_compat_table_and_json(digits: dict, run_cli: Run) -> None:
    bundle = digits["onnx"].bundle
    table = run_cli("inspect", "--compat", bundle)
    assert table.exit_code == 0, table.stderr
    assert "NPU placement" in table.stdout
    assert "33/41" in table.stdout and "37/37" in table.stdout and "9/37" in table.stdout
    assert "QuantizeLinear is not among" in table.stdout
    as_json = run_cli("inspect", "--compat", "--json", bundle)
    assert as_json.exit_code == 0
    assert json.loads(as_json.stdout) == digits["onnx"].manifest["compat"]


def build_cli(run_cli: Run, model: str | Path, calib: str, *extra: str) -> CliResult:
    return run_cli("-q", "build", model, "--target", "tflite", "--calib", calib, "--out", "out",
                   "--force", *extra)  # fmt: skip


def test_the_gate_passes_with_junit_case_per_required_soc(run_cli: Run, tmp_path: Path) -> None:
    result = build_cli(run_cli, DIGITS_MODEL, str(DIGITS_CALIB), "--require-npu", "SM8650",
                       "--require-npu", "SM8750", "--junit", "build.xml")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    suite = ET.parse(tmp_path / "build.xml").getroot().find("testsuite")
    assert suite is not None
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    for soc in ("SM8650", "SM8750"):
        assert cases[f"every op on {soc}"].find("failure") is None
    manifest = json.loads((tmp_path / "out" / "digits-tflite" / "manifest.json").read_text())
    assert manifest["compat"]["require"] == ["SM8650", "SM8750"]


def floormod_bundle(run_cli: Run, tmp_path: Path, *extra: str) -> CliResult:
    from tests.integration.models import savedmodel_with_floormod

    savedmodel_with_floormod(tmp_path / "fmod")
    write_gray_images(tmp_path / "calib", 20, (6, 6), classes=3)
    (tmp_path / "edgepack.toml").write_text(
        "[targets.tflite.settings]\nallow_float_fallback = true\n"
        + NO_BUDGET.replace("[drift]", "[targets.tflite.drift]")
    )
    return build_cli(run_cli, "fmod", "calib", *extra)


def test_an_op_off_a_required_npu_fails_the_build_naming_it(run_cli: Run, tmp_path: Path) -> None:
    result = floormod_bundle(run_cli, tmp_path, "--require-npu", "SM8650", "--junit", "j.xml")
    assert result.exit_code == EXIT_DRIFT, result.stderr
    assert "placement" in result.stderr and "Traceback" not in result.stderr
    manifest = json.loads((tmp_path / "out" / "fmod-tflite" / "manifest.json").read_text())
    assert_valid_manifest(manifest)  # the bundle is written, as after a drift failure
    compat = manifest["compat"]
    assert compat["passed"] is False and compat["require"] == ["SM8650"]
    placement = next(p for p in compat["devices"] if p["device"] == "SM8650")
    assert (placement["ops_offloaded"], placement["ops_total"], placement["partitions"]) == (
        6,
        7,
        2,
    )
    (cpu,) = placement["cpu_ops"]
    assert (cpu["index"], cpu["op"], cpu["boundary"]) == (2, "FLOOR_MOD", False)
    assert "ElementWiseBinary (operation=Mod)" in cpu["reason"]
    assert "float_32 unquantized" in cpu["reason"]
    failure = ET.parse(tmp_path / "j.xml").getroot().find(".//testcase[@name='every op on SM8650']")
    assert failure is not None
    message = failure.find("failure")
    assert message is not None and message.get("type") == "placement"
    assert "#2 FLOOR_MOD" in (message.get("message") or "")


def test_the_compile_confirms_what_the_partition_promised(run_cli: Run, tmp_path: Path) -> None:
    """CUMSUM is partitioned onto SM8350's HTP, but that generation cannot compile it in float:
    partitioning alone would have said the model is whole there."""
    from tests.integration.models import savedmodel_with_cumsum

    savedmodel_with_cumsum(tmp_path / "cumsum")
    write_gray_images(tmp_path / "calib", 20, (6, 6), classes=3)
    (tmp_path / "edgepack.toml").write_text(
        "[targets.tflite.settings]\nallow_float_fallback = true\n"
        + NO_BUDGET.replace("[drift]", "[targets.tflite.drift]")
    )
    result = build_cli(run_cli, "cumsum", "calib", "--require-npu", "SM8350")
    assert result.exit_code == EXIT_DRIFT, result.stderr
    manifest = json.loads((tmp_path / "out" / "cumsum-tflite" / "manifest.json").read_text())
    placements = {p["device"]: p for p in manifest["compat"]["devices"]}
    sm8350 = placements["SM8350"]
    assert (sm8350["ops_offloaded"], sm8350["ops_total"], sm8350["cpu_ops"]) == (6, 6, [])
    assert sm8350["compiled"] is False and "#2 CUMSUM" in sm8350["compile_error"]
    assert placements["SM8650"]["compiled"] is True  # a later HTP takes it
    assert "compile failed" in manifest["compat"]["failures"][0]


def test_compiled_models_ship_when_the_profile_asks(run_cli: Run, tmp_path: Path) -> None:
    (tmp_path / "edgepack.toml").write_text("[compat]\ndevices = ['SM8650']\nartefacts = true\n")
    result = build_cli(run_cli, DIGITS_MODEL, str(DIGITS_CALIB))
    assert result.exit_code == 0, result.stderr
    bundle = tmp_path / "out" / "digits-tflite"
    manifest = json.loads((bundle / "manifest.json").read_text())
    (placement,) = manifest["compat"]["devices"]
    assert placement["artefact"] == "npu/SM8650.tflite"
    compiled = (bundle / "npu" / "SM8650.tflite").read_bytes()
    assert compiled[4:8] == b"TFL3" and b"DISPATCH_OP" in compiled
    assert "npu/SM8650.tflite" in manifest["files"]  # hashed like every bundle file
    check = run_cli(
        "-q", "check", bundle, "--data", DIGITS_EVAL, "--model", DIGITS_MODEL, "--samples", "20"
    )
    assert check.exit_code == 0, check.stderr


def test_a_required_device_that_cannot_be_measured_stops_before_any_work(
    run_cli: Run, tmp_path: Path
) -> None:
    result = build_cli(run_cli, DIGITS_MODEL, str(DIGITS_CALIB), "--require-npu", "Tensor_G4")
    assert_one_line_error(result, EXIT_CONVERSION, "Tensor_G4", "ai-edge-litert-sdk-google-tensor")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("device", "needle"),
    [
        ("SM1234", "does not know SoC 'SM1234'"),
        ("K9000", "no target of this build places K9000"),
        ("ane", "no target of this build places ane"),  # asked of a tflite build
        ("SM 8650", "not a device name"),
    ],
)
def test_unknown_devices_are_refused_before_any_work(
    run_cli: Run, tmp_path: Path, device: str, needle: str
) -> None:
    result = build_cli(run_cli, DIGITS_MODEL, str(DIGITS_CALIB), "--require-npu", device)
    assert_one_line_error(result, EXIT_USAGE, needle)
    assert not (tmp_path / "out").exists()


def test_without_libqnnlpai_the_product_says_what_is_missing() -> None:
    """The tests' stand-in for libQnnLpai.so (tests/conftest.py) removed: the placement says
    how to get the library, nothing fails."""
    paths = os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep)
    env = dict(os.environ, LD_LIBRARY_PATH=os.pathsep.join(p for p in paths if "qnn" not in p))
    code = "from edgepack.placement import litert; print(litert.device('SM8650').missing)"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "libQnnLpai.so" in out and "QNN_SDK_ROOT" in out


def test_inspect_compat_of_a_bundle_without_placement(
    digits: dict, run_cli: Run, tmp_path: Path
) -> None:
    import shutil

    from edgepack.bundle import seal_manifest

    bundle = tmp_path / "old-tflite"
    shutil.copytree(digits["tflite"].bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    del manifest["compat"]  # as a bundle from before placement
    (bundle / "manifest.json").write_text(json.dumps(seal_manifest(manifest), indent=2))
    table = run_cli("inspect", "--compat", bundle)
    assert table.exit_code == 0, table.stderr
    assert "no placement recorded" in table.stdout
    as_json = run_cli("inspect", "--compat", "--json", bundle)
    assert as_json.exit_code == 0 and as_json.stdout.strip() == "null"
