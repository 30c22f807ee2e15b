"""``--set KEY=VALUE``: options and backend settings from the command line, checked like the
config."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgepack.backends.coreml import CoreMLSettings
from edgepack.backends.onnx import ONNXSettings
from edgepack.errors import ConfigError
from edgepack.options import (
    Overrides,
    check_overrides,
    override_layer,
    parse_overrides,
    resolve_build_options,
)
from edgepack.profiles import load_profile


def test_values_are_read_as_toml_and_keys_sorted_by_whom_they_reach() -> None:
    sets = parse_overrides(["quantize=w8a8", "drift.max_drop=2%", "targets.onnx.per_channel=false",
                            "compat.require=['SM8650']", "targets.onnx.drift.min_sqnr=20",
                            "settings.percentile=99.9", "force=true"])  # fmt: skip
    assert sets == Overrides(
        generic={"drift.max_drop": "2%", "compat.require": ["SM8650"], "force": True},
        settings={"quantize": "w8a8", "percentile": 99.9},
        per_target={"onnx": {"settings.per_channel": False, "drift.min_sqnr": 20}},
    )
    onnx = override_layer(sets, "onnx", ONNXSettings)
    assert onnx["settings.per_channel"] is False and onnx["settings.percentile"] == 99.9
    assert "settings.quantize" not in onnx  # onnx has no such setting: coreml's
    assert override_layer(sets, "coreml", CoreMLSettings)["settings.quantize"] == "w8a8"


def test_overrides_sit_above_the_config_and_below_named_flags(tmp_path: Path) -> None:
    (tmp_path / "edgepack.toml").write_text("[targets.onnx.settings]\nper_channel = true\n")
    sets = parse_overrides(["per_channel=false", "drift.max_drop=3%"])
    options = resolve_build_options(
        load_profile("onnx"), ONNXSettings, {"drift.max_drop": "1%"}, tmp_path, {}, sets
    )
    assert options.settings.per_channel is False
    assert options.thresholds.max_drop == pytest.approx(0.01)


@pytest.mark.parametrize(
    ("items", "needle"),
    [
        (["quantize"], "expected KEY=VALUE"),
        (["targets.onnx=1"], "expected targets.<profile>.<key>=VALUE"),
        (["drift.max_drop=7"], "--set: drift.max_drop: expected a fraction"),
        (["drift.bogus=1"], "unknown option 'drift.bogus'"),
    ],
)
def test_malformed_overrides_are_refused(items: list[str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace(".", r"\.")):
        parse_overrides(items)


def test_an_override_that_reaches_no_target_is_an_error() -> None:
    with pytest.raises(ConfigError, match="no target of this build has an option or setting"):
        check_overrides(parse_overrides(["quantize=fp16"]), {"onnx": ONNXSettings})
    with pytest.raises(ConfigError, match="'tflite' is not a target of this build"):
        check_overrides(parse_overrides(["targets.tflite.io_dtype=uint8"]), {"onnx": ONNXSettings})
    check_overrides(parse_overrides(["quantize=fp16"]), {"coreml": CoreMLSettings})
