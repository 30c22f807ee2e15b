"""The placement report's parts that need no vendor tool: reading the tools' logs (lines
recorded from ai-edge-litert 2.3.0 and onnxruntime-qnn 2.7.0), the gate, the manifest
record, and the [compat] options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgepack.bundle import recorded_compat
from edgepack.errors import BundleError, ConfigError
from edgepack.options import CompatOptions, env_layer, resolve_build_options
from edgepack.placement import (
    FAILED,
    OK,
    UNAVAILABLE,
    Compat,
    CpuOp,
    Device,
    Placement,
    litert,
    qnn,
    unavailable,
)
from edgepack.profiles import load_profile

# apply_plugin_main --cmd=partition, Qualcomm plugin, on a model with FLOOR_MOD and REDUCE_PROD
LITERT_LOG = """\
ERROR: [qnn_manager.cc:480]
QNN op validation failed: 'ElementWiseBinary_7' (type=ElementWiseBinary, operation=Mod)
  Inputs:
    [0] name="0_litert_10" dtype=QNN_DATATYPE_FLOAT_32 dims=[1,2048] (no quantization)
    [1] name="1_litert_4" dtype=QNN_DATATYPE_FLOAT_32 dims=[1] (no quantization)
  Outputs:
    [0] name="2_litert_11" dtype=QNN_DATATYPE_FLOAT_32 dims=[1,2048] (no quantization)
ERROR: [qnn_compiler_plugin.cc:538]
LiteRT Op #6 'FloorMod' (code=95) is not supported in Qualcomm Compiler.
  Inputs:
    [0] name="Reshape1"  tensor_idx=10
ERROR: [qnn_compiler_plugin.cc:538]
LiteRT Op #8 'ReduceProd' (code=81) is not supported in Qualcomm Compiler.
  Inputs:
    [0] name="Reshape"  tensor_idx=9
INFO: [compiler_plugin.cc:742] Partitioned subgraph<0>, selected 16 ops, from a total of 18 ops. \
resulted in 3 partitions.
"""

# onnxruntime verbose log of a QNN EP session (LogNodeSupport, VerifyEachNodeIsAssignedToAnEp)
V = "2026-12-06 06:03:33.9 [V:onnxruntime:, "
QNN_LOG = f"""\
{V}qnn_execution_provider.cc:1713 LogNodeSupport] Validation FAILED for 1 nodes in \
OrtNodeUnit (QuantizeLinear) :
\tOperator type: QuantizeLinear Node name: x_QuantizeLinear Node index: 109
\tREASON : QNN EP is configured to not take Q nodes that consume a graph input.

{V}qnn_execution_provider.cc:1713 LogNodeSupport] Validation PASSED for 5 nodes in \
OrtNodeUnit (Conv) :
\tOperator type: Conv Node name: conv_1 Node index: 3

{V}qnn_execution_provider.cc:1713 LogNodeSupport] Validation FAILED for 3 nodes in \
OrtNodeUnit (HardSigmoid) :
\tOperator type: DequantizeLinear Node name: hs_dq Node index: 137
\tOperator type: HardSigmoid Node name: HardSigmoid@0 Node index: 138
\tREASON : Failed to add node.

{V}session_state.cc:1598 VerifyEachNodeIsAssignedToAnEp] Node placements
{V}session_state.cc:1604 VerifyEachNodeIsAssignedToAnEp]  Node(s) placed on \
[QNNExecutionProvider]. Number of nodes: 2
{V}session_state.cc:1606 VerifyEachNodeIsAssignedToAnEp]   QNNExecutionProvider_1_0 (QNN_1_0)
{V}session_state.cc:1606 VerifyEachNodeIsAssignedToAnEp]   QNNExecutionProvider_1_1 (QNN_1_1)
{V}session_state.cc:1604 VerifyEachNodeIsAssignedToAnEp]  Node(s) placed on \
[CPUExecutionProvider]. Number of nodes: 3
{V}session_state.cc:1606 VerifyEachNodeIsAssignedToAnEp]   QuantizeLinear (x_QuantizeLinear)
{V}session_state.cc:1606 VerifyEachNodeIsAssignedToAnEp]   HardSigmoid (HardSigmoid@0)
{V}session_state.cc:1606 VerifyEachNodeIsAssignedToAnEp]   DequantizeLinear (hs_dq)
"""


def test_litert_rejections_carry_the_validator_reason_or_the_missing_legalization() -> None:
    reasons = litert._rejections(LITERT_LOG)
    assert reasons == {
        6: "QNN's HTP validator refused ElementWiseBinary (operation=Mod) on "
        "float_32 unquantized tensors",
        8: "no QNN equivalent of ReduceProd in LiteRT's Qualcomm plugin",
    }
    stats = litert._STATS.findall(LITERT_LOG)
    assert stats == [("0", "16", "18", "3")]


@pytest.mark.parametrize(
    ("vendor", "log", "needle"),
    [
        ("qualcomm", "└ Could not load shared library /x/libLiteRtCompilerPlugin_Qualcomm.so: "
         "libQnnLpai.so: cannot open shared object file: No such file", "QNN_SDK_ROOT"),
        ("qualcomm", "└ Could not load shared library /x/p.so: libQnnHtp.so: cannot open shared "
         "object file", "edgepack[npu]"),
        ("mediatek", "ERROR: [neuron_adapter_api.cc:65] Failed to load NeuronAdapter shared "
         "library: Failed to load NeuronAdapter shared library", "ai-edge-litert-sdk-mediatek"),
        ("google", "ERROR: [adapter_aot.cc:51] Failed to create Adapter: Failed to load Tensor "
         "TPU compiler library: liblitert_plugin_compiler.so: cannot open",
         "ai-edge-litert-sdk-google-tensor"),
    ],
)  # fmt: skip
def test_a_missing_vendor_library_is_named_with_how_to_get_it(
    vendor: str, log: str, needle: str
) -> None:
    missing = litert._missing_library(litert.VENDORS[vendor], log)
    assert missing is not None and needle in missing
    assert litert._missing_library(litert.VENDORS[vendor], "INFO: Loaded 1 plugins") is None


@pytest.mark.parametrize(
    ("name", "vendor"),
    [("SM8650", "qualcomm"), ("sa8295", "qualcomm"), ("qualcomm:QCS6490", "qualcomm"),
     ("mt6989", "mediatek"), ("Tensor_G4", "google"), ("nnapi", None), ("ane", None)],
)  # fmt: skip
def test_soc_names_are_routed_to_their_vendor(name: str, vendor: str | None) -> None:
    found = litert.vendor_of(name)
    assert (found.key if found else None) == vendor


def test_qnn_verdicts_and_assignment_from_the_verbose_log() -> None:
    verdicts = qnn._verdicts(QNN_LOG)
    assert verdicts["conv_1"][0] == "PASSED"
    assert verdicts["HardSigmoid@0"] == ("FAILED", "HardSigmoid", "Failed to add node.")
    on_cpu, partitions = qnn._assignment(QNN_LOG)
    assert partitions == 2
    assert on_cpu == [
        ("QuantizeLinear", "x_QuantizeLinear"),
        ("HardSigmoid", "HardSigmoid@0"),
        ("DequantizeLinear", "hs_dq"),
    ]
    nodes = [("x_QuantizeLinear", "QuantizeLinear"), ("conv_1", "Conv"),
             ("hs_dq", "DequantizeLinear"), ("HardSigmoid@0", "HardSigmoid")]  # fmt: skip
    cpu = qnn._cpu_ops(nodes, on_cpu, verdicts, boundary=set())
    assert [(c.index, c.op, c.boundary) for c in cpu] == [
        (0, "QuantizeLinear", True),  # the EP's own words: a Q node of a graph input
        (3, "HardSigmoid", False),
        (2, "DequantizeLinear", False),
    ]
    assert cpu[2].reason == "Failed to add node. (in a HardSigmoid node unit)"
    assert qnn._assignment(f"{V}x VerifyEachNodeIsAssignedToAnEp] All nodes placed on "
                           "[QNNExecutionProvider]. Number of nodes: 1") == ([], 1)  # fmt: skip


def placement(**changes: object) -> Placement:
    base = Placement("SM8650", "Qualcomm", "Hexagon NPU (HTP)", "tool", "compiler", OK,
                     ops_total=7, ops_offloaded=7, partitions=1)  # fmt: skip
    return Placement(**{**base.__dict__, **changes})  # type: ignore[arg-type]


def test_the_gate_fails_on_fallen_ops_failed_compiles_and_unmeasured_devices() -> None:
    boundary = CpuOp(0, "QuantizeLinear", "by design", "x_q", boundary=True)
    fallen = CpuOp(2, "FLOOR_MOD", "refused")
    assert Compat((placement(cpu_ops=(boundary,)),), ("SM8650",)).passed
    assert Compat((placement(cpu_ops=(fallen,)),), ()).passed  # nothing required
    failing = Compat((placement(cpu_ops=(boundary, fallen), ops_offloaded=6),), ("sm8650",))
    assert failing.failures == ["SM8650: 1 of 7 ops fall to the CPU: #2 FLOOR_MOD (refused)"]
    compile = Compat((placement(compiled=False, compile_error="exit 6"),), ("SM8650",))
    assert compile.failures == ["SM8650: partitioned whole, but the compile failed: exit 6"]
    device = Device("Tensor_G4", "Google", "Tensor TPU", "tool", missing="install the SDK")
    missing = Compat((unavailable(device),), ("Tensor_G4",))
    assert missing.placements[0].status == UNAVAILABLE
    assert missing.failures == ["Tensor_G4: not measured here: install the SDK"]
    failed = Compat((placement(status=FAILED, compile_error="boom"),), ("SM8650",))
    assert failed.failures == ["SM8650: tool failed: boom"]
    assert Compat((), ("SM8750",)).failures == ["SM8750: not placed"]


def test_the_record_round_trips_and_a_malformed_one_is_a_damaged_bundle() -> None:
    compat = Compat((placement(cpu_ops=(CpuOp(2, "FLOOR_MOD", "refused", "t"),)),), ("SM8650",))
    manifest = {"compat": json.loads(json.dumps(compat.to_dict()))}
    assert recorded_compat(manifest, Path("m.json")) == compat
    assert recorded_compat({"compat": None}, Path("m.json")) is None
    del manifest["compat"]["devices"][0]["cpu_ops"]
    with pytest.raises(BundleError, match="compat is malformed"):
        recorded_compat(manifest, Path("m.json"))


def test_compat_options_from_every_layer(tmp_path: Path) -> None:
    from edgepack.backends.tflite import TFLiteSettings

    profile = load_profile("tflite")
    assert profile.compat["devices"] == ["SM8650", "SM8750", "mt6989", "Tensor_G4"]
    (tmp_path / "edgepack.toml").write_text(
        "[compat]\ndevices = ['SM8650']\n[targets.tflite.compat]\nartefacts = true\n"
    )
    options = resolve_build_options(
        profile,
        TFLiteSettings,
        {"compat.require": ["SM8750", "sm8650"]},
        tmp_path,
        {"EDGEPACK_REQUIRE_NPU": "SM8450"},
    )
    assert options.compat == CompatOptions(("SM8650",), ("SM8750", "sm8650"), True, True)
    assert options.compat.all_devices == ("SM8650", "SM8750")
    assert env_layer({"EDGEPACK_REQUIRE_NPU": "SM8650, nnapi"}) == {
        "compat.require": ("SM8650", "nnapi")
    }
    (tmp_path / "edgepack.toml").write_text("[compat]\nplaces = ['SM8650']\n")
    with pytest.raises(ConfigError, match=r"unknown option 'compat\.places'"):
        resolve_build_options(profile, TFLiteSettings, {}, tmp_path, {})
    (tmp_path / "edgepack.toml").write_text("[compat]\ndevices = 'SM8650;rm -rf'\n")
    with pytest.raises(ConfigError, match="not a device name"):
        resolve_build_options(profile, TFLiteSettings, {}, tmp_path, {})


def test_fixed_input_shapes_fill_open_dimensions_from_a_sample() -> None:
    from edgepack.backends.base import TensorInfo, fixed_input_shapes

    inputs = [
        TensorInfo("x", "x", (-1, 3, -1, -1), "float32"),
        TensorInfo("y", "y", (-1, 8, 8, 1), "float32"),
        TensorInfo("z", "z_src", (-1, 4, 6, 3), "float32", transpose=(0, 2, 3, 1)),
    ]
    samples = {"x": (1, 3, 48, 192), "z_src": (1, 3, 4, 6)}
    assert fixed_input_shapes(inputs, samples) == {
        "x": (1, 3, 48, 192),
        "y": (1, 8, 8, 1),
        "z": (1, 4, 6, 3),
    }
