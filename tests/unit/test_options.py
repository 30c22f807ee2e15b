"""Profiles and option resolution: precedence of every layer, and unknown keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgepack.backends.tflite import TFLiteSettings
from edgepack.errors import ConfigError
from edgepack.options import parse_fraction, resolve_build_options, resolve_check_options
from edgepack.profiles import builtin_profile_names, firmware_note_file, load_profile


def resolve(
    tmp_path: Path, cli: dict | None = None, env: dict | None = None, profile: str = "tflite"
):
    return resolve_build_options(
        load_profile(profile), TFLiteSettings, cli or {}, tmp_path, env or {}
    )


def test_builtin_profile_values_apply(tmp_path: Path) -> None:
    options = resolve(tmp_path)
    assert options.num_calib == 200
    assert options.thresholds.min_agreement == 0.99
    assert options.thresholds.min_sqnr == 15.0
    assert options.settings == TFLiteSettings(io_dtype="int8", allow_float_fallback=False)
    assert options.out_dir == tmp_path / "bundles"
    assert options.profile.source == "builtin:tflite"


def test_precedence_profile_config_env_cli(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        "[tool.edgepack]\nout = 'from-config'\n[tool.edgepack.calibration]\nnum_samples = 50\n"
        "seed = 5\n[tool.edgepack.drift]\nmax_drop = '2%'\n"
        "[tool.edgepack.targets.tflite.settings]\nio_dtype = 'uint8'\n"
        "[tool.edgepack.targets.tflite.drift]\nmin_sqnr = 20\n"
    )
    options = resolve(tmp_path)
    assert (options.num_calib, options.seed, options.out_dir.name) == (50, 5, "from-config")
    assert options.thresholds.max_drop == pytest.approx(0.02)
    assert options.thresholds.min_sqnr == 20.0
    assert options.settings.io_dtype == "uint8"

    options = resolve(tmp_path, env={"EDGEPACK_NUM_CALIB": "60", "EDGEPACK_MAX_DROP": "0.5%"})
    assert options.num_calib == 60 and options.seed == 5
    assert options.thresholds.max_drop == pytest.approx(0.005)

    options = resolve(
        tmp_path,
        cli={"calibration.num_samples": 70, "drift.max_drop": None},
        env={"EDGEPACK_NUM_CALIB": "60"},
    )
    assert options.num_calib == 70  # flags beat the environment; None means "not given"
    assert options.thresholds.max_drop == pytest.approx(0.02)


def test_edgepack_toml_is_found_in_a_parent_folder(tmp_path: Path) -> None:
    (tmp_path / "edgepack.toml").write_text("[drift]\nmin_agreement = '95%'\n")
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    assert resolve(nested).thresholds.min_agreement == pytest.approx(0.95)


def test_threshold_can_be_switched_off(tmp_path: Path) -> None:
    options = resolve(tmp_path, env={"EDGEPACK_MIN_SQNR": "off"})
    assert options.thresholds.min_sqnr is None


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("[tool.edgepack]\nnum_calib = 3\n", "unknown option 'num_calib'"),
        ("[tool.edgepack.drift]\nmin_agrement = 0.9\n", "unknown option 'drift.min_agrement'"),
        ("[tool.edgepack.targets.tflite.settings]\nio_type = 'int8'\n", "unknown setting"),
        ("[tool.edgepack.targets.tflite.settings]\nio_dtype = 'int4'\n", "io_dtype must be"),
        ("[tool.edgepack.targets.tflite.settings]\nmode = 'dynamic'\n", "io_dtype = 'float32'"),
        ("[tool.edgepack.targets.tflite.settings]\nio_dtype = 'float32'\n", "mode = 'dynamic'"),
        ("[tool.edgepack.targets.tflite.settings]\nmode = 'hybrid'\n", "mode must be one of"),
        ("[tool.edgepack.calibration]\nnum_samples = 0\n", "whole number >= 1"),
        ("[tool.edgepack.drift]\nmax_drop = '150%'\n", "between 0 and 1"),
        ("[tool.edgepack.drift]\nmin_sqnr = nan\n", "finite number"),
        ("[tool.edgepack.drift]\nmin_sqnr = 'inf'\n", "finite number"),
        ("[tool.edgepack.calibration]\nseed = -1\n", "whole number >= 0"),
        ("[tool.edgepack\n", "invalid TOML"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, config: str, message: str) -> None:
    (tmp_path / "pyproject.toml").write_text(config)
    with pytest.raises(ConfigError, match=message):
        resolve(tmp_path)


def test_unknown_environment_variable_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown environment variable EDGEPACK_NUMCALIB"):
        resolve(tmp_path, env={"EDGEPACK_NUMCALIB": "3"})
    resolve(tmp_path, env={"EDGEPACK_MODELS": "/cache"})  # used by scripts, not an option


def test_check_options_start_from_the_bundle_profile(tmp_path: Path) -> None:
    options = resolve_check_options(
        {"min_agreement": 0.5, "samples": 10}, "tflite", {"drift.max_drop": "3%"}, tmp_path, {}
    )
    assert options.thresholds.min_agreement == 0.5
    assert options.thresholds.max_drop == pytest.approx(0.03)
    assert options.drift_samples == 10


@pytest.mark.parametrize(
    ("text", "value"), [("1%", 0.01), ("0.25", 0.25), (0.5, 0.5), ("100%", 1.0)]
)
def test_parse_fraction(text: object, value: float) -> None:
    assert parse_fraction(text) == pytest.approx(value)


def test_builtin_profiles_load_and_link_existing_firmware_notes() -> None:
    repo = Path(__file__).resolve().parents[2]
    assert "tflite" in builtin_profile_names()
    for name in builtin_profile_names():
        profile = load_profile(name)
        assert profile.name == name
        assert profile.firmware_note is not None
        assert (repo / profile.firmware_note).is_file(), profile.firmware_note
        shipped = firmware_note_file(profile)  # what every bundle of the profile carries
        assert (
            shipped is not None
            and shipped.read_bytes() == (repo / profile.firmware_note).read_bytes()
        )


def test_a_user_profile_note_is_found_beside_it_or_refused(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "board.md").write_text("# our board\n")
    good = tmp_path / "board.toml"
    good.write_text(
        '[profile]\nname = "board"\nextends = "tflite"\ndescription = "ours"\n'
        'firmware_note = "notes/board.md"\n'
    )
    assert firmware_note_file(load_profile(str(good))) == tmp_path / "notes" / "board.md"
    inherited = tmp_path / "plain.toml"  # the base profile's note, shipped with edgepack
    inherited.write_text('[profile]\nname = "plain"\nextends = "onnx"\ndescription = "x"\n')
    assert firmware_note_file(load_profile(str(inherited))).name == "cpu-onnx.md"  # type: ignore[union-attr]
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[profile]\nname = "bad"\nextends = "tflite"\ndescription = "x"\n'
        'firmware_note = "notes/missing.md"\n'
    )
    with pytest.raises(ConfigError, match=r"firmware_note 'notes/missing\.md' not found"):
        firmware_note_file(load_profile(str(bad)))


def test_user_profile_extends_a_builtin(tmp_path: Path) -> None:
    path = tmp_path / "npu-uint8.toml"
    path.write_text(
        '[profile]\nname = "npu-uint8"\nextends = "tflite"\n'
        'description = "uint8 I/O"\n[settings]\nio_dtype = "uint8"\n'
    )
    profile = load_profile(str(path))
    assert (profile.name, profile.backend) == ("npu-uint8", "tflite")
    assert profile.settings["io_dtype"] == "uint8"
    assert profile.drift["min_agreement"] == 0.99  # inherited
    assert profile.source == str(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[profile]\nname = "x"\nbackend = "tflite"\n', "needs a non-empty string 'description'"),
        ('[profile]\nname="x"\nbackend="t"\ndescription="d"\n[extra]\na=1\n', "unknown table"),
        ('[profile]\nname="x"\nbackend="t"\ndescription="d"\ncolour="red"\n', "unknown key"),
        ('[profile]\nextends = "nope"\n', "'extends' must name a built-in profile"),
    ],
)
def test_bad_profiles(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_profile(str(path))


def test_unknown_target_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown target 'tflight' \(known: .*tflite"):
        load_profile("tflight")


def test_tune_is_off_by_default_and_each_layer_can_switch_it(tmp_path: Path) -> None:
    from edgepack.options import TuneOptions

    assert resolve(tmp_path).tune == TuneOptions()
    assert resolve(tmp_path).tune.enabled is False
    (tmp_path / "edgepack.toml").write_text("tune = true\n")  # the short form
    assert resolve(tmp_path).tune.enabled is True
    assert resolve(tmp_path, env={"EDGEPACK_TUNE": "0"}).tune.enabled is False
    cli = {"tune.enabled": True, "tune.max_seconds": 30.0}
    tuned = resolve(tmp_path, cli=cli, env={"EDGEPACK_TUNE": "0"}).tune
    assert (tuned.enabled, tuned.max_seconds) == (True, 30.0)


def test_tune_bounds_come_from_a_profile_then_the_config(tmp_path: Path) -> None:
    profile = tmp_path / "mine.toml"
    profile.write_text(
        '[profile]\nname = "mine"\nextends = "onnx"\n[tune]\nenabled = true\n'
        "max_candidates = 4\nvalidation = 0.25\n"
    )
    (tmp_path / "edgepack.toml").write_text("[tune]\nmax_seconds = 90\n")
    from edgepack.backends.onnx import ONNXSettings

    tune = resolve_build_options(load_profile(str(profile)), ONNXSettings, {}, tmp_path, {}).tune
    assert (tune.enabled, tune.max_candidates, tune.validation, tune.max_seconds) == (
        True,
        4,
        0.25,
        90.0,
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("[tune]\nmax_seconds = 0\n", "tune.max_seconds: expected a number of seconds > 0"),
        ("[tune]\nvalidation = 0.8\n", "tune.validation: expected a fraction above 0"),
        ("[tune]\nmax_candidates = 0\n", "tune.max_candidates: expected a whole number"),
        ("[tune]\nbudget = 3\n", "unknown option 'tune.budget'"),
        ("tune = 'maybe'\n", "tune.enabled: expected true or false"),
        ("[tune]\nmax_float_layers = -1\n", "tune.max_float_layers: expected a whole number >= 0"),
        ("[tune]\nprecisions = ['int4']\n", "tune.precisions: unknown precision int4"),
        ("[tune]\nprecisions = 3\n", "tune.precisions: expected a list of int16 and float"),
    ],
)
def test_bad_tune_options_name_the_key(tmp_path: Path, config: str, message: str) -> None:
    (tmp_path / "edgepack.toml").write_text(config)
    with pytest.raises(ConfigError, match=message):
        resolve(tmp_path)


def test_the_precision_ladder_is_set_in_the_config_the_environment_and_the_cli(
    tmp_path: Path,
) -> None:
    assert resolve(tmp_path).tune.precisions == ("int16", "float")
    (tmp_path / "edgepack.toml").write_text("[tune]\nprecisions = ['float', 'int16']\n")
    assert resolve(tmp_path).tune.precisions == ("int16", "float")  # always narrowest first
    env = {"EDGEPACK_TUNE_PRECISIONS": "float"}
    assert resolve(tmp_path, env=env).tune.precisions == ("float",)
    cli = {"tune.precisions": "none"}
    assert resolve(tmp_path, cli=cli, env=env).tune.precisions == ()
    (tmp_path / "edgepack.toml").write_text("[tune]\nmax_float_layers = 0\n")
    assert resolve(tmp_path).tune.max_float_layers == 0
