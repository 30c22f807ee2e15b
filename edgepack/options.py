"""Options, resolved once into frozen dataclasses.

Precedence, lowest first (each layer overrides the ones before it):

1. built-in defaults (the dataclass defaults below);
2. the target profile (``[calibration]``, ``[drift]``, ``[settings]``);
3. the project config: ``edgepack.toml``, or ``[tool.edgepack]`` in ``pyproject.toml``, found in
   the working directory or its parents; its ``[targets.<name>]`` tables apply to one target;
4. ``EDGEPACK_*`` environment variables;
5. command-line flags (or keyword arguments of :func:`edgepack.build` / :func:`edgepack.check`).

Unknown keys, in any layer, are errors.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from edgepack.appmeta import ModelInfo
from edgepack.errors import ConfigError
from edgepack.profiles import TargetProfile

T = TypeVar("T")


def parse_fraction(value: Any) -> float:
    """``"1%"`` -> 0.01; ``0.01`` -> 0.01. Used for agreement and accuracy-drop thresholds."""
    text = str(value).strip()
    try:
        number = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        raise ValueError(f"expected a fraction like 0.01 or 1%, got {value!r}") from None
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"expected a fraction between 0 and 1 (or 0% and 100%), got {value!r}")
    return number


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _whole_number(minimum: int) -> Callable[[Any], int]:
    """A parser of whole numbers >= ``minimum`` (booleans refused: TOML's true is not 1)."""

    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError(f"expected a whole number, got {value!r}")
        number = int(value)
        if number < minimum:
            raise ValueError(f"expected a whole number >= {minimum}, got {value!r}")
        return number

    return parse


_parse_count = _whole_number(1)
_parse_limit = _whole_number(0)


_parse_seed = _whole_number(0)  # NumPy's generators take seeds >= 0


def _finite_float(value: Any) -> float:
    """A finite number (nan and inf would pass every comparison, or none)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {value!r}")
    return number


def _parse_slices(value: Any) -> dict[str, dict[str, str]]:
    """``{output: {slice name: "start:stop"}}``: slices of an output's last axis measured apart."""
    from edgepack.drift.channels import parse_slice

    if not isinstance(value, Mapping):
        raise ValueError('expected a table like {detections = {boxes = "0:4", scores = "4:"}}')
    slices: dict[str, dict[str, str]] = {}
    for output, table in value.items():
        if not isinstance(table, Mapping) or not table:
            raise ValueError(f"{output}: expected a table of slice names to 'start:stop'")
        for text in table.values():
            parse_slice(str(text))
        slices[str(output)] = {str(name): str(text) for name, text in table.items()}
    return slices


def parse_paths(value: Any) -> tuple[str, ...]:
    """Execution paths to check: a list of names, or ``"a,b"``; ``"all"`` (or empty) means
    every path the host has. Names are checked against the target's paths when it runs."""
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, list | tuple):
        raise ValueError(f"expected a list of execution path names or 'all', got {value!r}")
    cleaned = tuple(dict.fromkeys(str(name).strip() for name in names if str(name).strip()))
    return () if cleaned in ((), ("all",)) else cleaned


def _parse_precisions(value: Any) -> tuple[str, ...]:
    """The precisions mixed precision may raise a layer to: a list, or ``"int16,float"``;
    ``"none"`` (or empty) for none. Each target uses those it can express, in the order
    int16, float."""
    from edgepack.tune import WIDER

    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, list | tuple):
        raise ValueError(f"expected a list of {' and '.join(WIDER)}, got {value!r}")
    cleaned = {str(name).strip().lower() for name in names if str(name).strip()}
    cleaned.discard("none")
    unknown = sorted(cleaned - set(WIDER))
    if unknown:
        raise ValueError(f"unknown precision {', '.join(unknown)} (expected {', '.join(WIDER)})")
    return tuple(p for p in WIDER if p in cleaned)


def _parse_detections(value: Any) -> dict[str, str]:
    """``{output: layout}``: outputs measured as detections (YOLO-style ``channels_first`` for
    ``[N, 4+C, anchors]``, ``channels_last`` for ``[N, anchors, 4+C]``; ``map`` for one-channel
    probability maps), or ``off`` to stop the automatic recognition of an output."""
    from edgepack.drift.detections import LAYOUTS

    if not isinstance(value, Mapping):
        raise ValueError('expected a table like {output0 = "channels_first"}')
    table = {str(output): str(layout) for output, layout in value.items()}
    for output, layout in table.items():
        if layout not in (*LAYOUTS, "off"):
            raise ValueError(f"{output}: expected one of {', '.join((*LAYOUTS, 'off'))}")
    return table


def _parse_text(value: Any) -> str:
    """A line of text for the model's metadata (no control characters)."""
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    if any(ord(c) < 32 for c in value):
        raise ValueError(f"expected one line without control characters, got {value!r}")
    return value


def _parse_name(value: Any) -> str:
    text = _parse_text(value)
    if not text.strip():
        raise ValueError("expected a non-empty name")
    return text


def _parse_output_semantics(value: Any) -> dict[str, str]:
    """``{output = "probabilities"}``: what each output holds (see :mod:`edgepack.appmeta`)."""
    from edgepack.appmeta import parse_semantics_table

    try:
        return parse_semantics_table(value, "model.outputs", ValueError)
    except ValueError as exc:
        raise ValueError(str(exc).removeprefix("model.outputs: ")) from None


def _parse_seconds(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a number of seconds, got {value!r}")
    number = float(value)
    if not number > 0:
        raise ValueError(f"expected a number of seconds > 0, got {value!r}")
    return number


def _parse_validation(value: Any) -> float:
    number = parse_fraction(value)
    if not 0.0 < number <= 0.5:
        raise ValueError(f"expected a fraction above 0 and at most 50%, got {value!r}")
    return number


DEVICE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.:-]{0,63}")


def _parse_devices(value: Any) -> tuple[str, ...]:
    """Accelerators to place bundles on (``[compat]``): a list of names, or ``"a,b"``; SoC
    models (``SM8650``, ``mt6989``, ``Tensor_G4``) or ``nnapi``, ``coreml-ep``, ``ane``.
    Each target places the ones it knows (README: NPU placement)."""
    from edgepack.placement import unique_names

    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, list | tuple):
        raise ValueError(f"expected a list of device names, got {value!r}")
    cleaned = [str(name).strip() for name in names if str(name).strip()]
    for name in cleaned:
        if not DEVICE_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a device name (like SM8650, nnapi, ane)")
    return unique_names(cleaned)


GENERIC_SECTIONS = ("calibration", "drift", "tune", "model", "compat")


@dataclass(frozen=True)
class Overrides:
    """``--set KEY=VALUE`` overrides, sorted by whom they apply to: ``generic`` option keys
    and ``settings`` (bare setting names) for every target of the build, ``per_target``
    keys for one profile (``targets.<profile>.<key>``)."""

    generic: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    per_target: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)


def parse_overrides(items: Sequence[str]) -> Overrides:
    """``KEY=VALUE`` strings, as in a config file: the value is read as TOML (``false``,
    ``3``, ``"w8a8"``, ``["SM8650"]``), else taken as text. KEY is an option
    (``drift.max_drop``, ``out``), a backend setting (``quantize``, ``settings.quantize``), or
    either for one target (``targets.onnx.per_channel``). Checked like the config."""
    generic: dict[str, Any] = {}
    settings: dict[str, Any] = {}
    per_target: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, text = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE (like quantize=w8a8)")
        value = _toml_value(text.strip())
        if key.startswith("targets."):
            _, target, rest = [*key.split(".", 2), "", ""][:3]
            if not target or not rest:
                raise ConfigError(f"--set {item!r}: expected targets.<profile>.<key>=VALUE")
            per_target.setdefault(target, {})[_dotted(rest)] = value
        elif key in GENERIC_KEYS or key in ALIASES or key.split(".", 1)[0] in GENERIC_SECTIONS:
            generic[key] = value
        else:
            settings[key.removeprefix("settings.")] = value
    _checked(generic, "--set", allow_settings=False)
    return Overrides(generic, settings, per_target)


def _dotted(key: str) -> str:
    """A per-target key: an option as it is, a bare setting name as ``settings.<name>``."""
    if (
        key in GENERIC_KEYS
        or key.startswith("settings.")
        or key.split(".", 1)[0] in (GENERIC_SECTIONS)
    ):
        return key
    return f"settings.{key}"


def _toml_value(text: str) -> Any:
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def override_layer(overrides: Overrides, profile: str, settings_type: type) -> dict[str, Any]:
    """The overrides one target gets: the generic ones, the settings its backend has, and
    its own (checked like the config's ``[targets.<profile>]``)."""
    names = {f.name for f in dataclasses.fields(settings_type)}
    layer = dict(overrides.generic)
    layer.update({f"settings.{k}": v for k, v in overrides.settings.items() if k in names})
    layer.update(overrides.per_target.get(profile, {}))
    return _checked(layer, "--set", allow_settings=True)


def check_overrides(overrides: Overrides, targets: Mapping[str, type]) -> None:
    """Every override must reach a target of the build: a setting no target's backend has,
    or a ``targets.<profile>`` the build does not build, is an error (a typo must not pass)."""
    for profile in overrides.per_target:
        if profile not in targets:
            raise ConfigError(
                f"--set targets.{profile}.*: {profile!r} is not a target of this build "
                f"({', '.join(targets)})"
            )
    for key in overrides.settings:
        if not any(key in {f.name for f in dataclasses.fields(t)} for t in targets.values()):
            known = sorted({f.name for t in targets.values() for f in dataclasses.fields(t)})
            raise ConfigError(
                f"--set {key}: no target of this build has an option or setting {key!r} "
                f"(settings: {', '.join(known)}; options: {', '.join(sorted(GENERIC_KEYS))})"
            )


def _optional(parser: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A threshold can be switched off with ``"off"`` (config, env) or ``none``."""

    def parse(value: Any) -> Any:
        if value is None or str(value).strip().lower() in {"off", "none"}:
            return None
        return parser(value)

    return parse


# Every generic option: dotted key -> parser. Backend settings ("settings.*") are checked
# against the backend's own settings dataclass.
GENERIC_KEYS: dict[str, Callable[[Any], Any]] = {
    "out": str,
    "force": _parse_bool,
    "calibration.num_samples": _parse_count,
    "calibration.seed": _parse_seed,
    "drift.samples": _parse_count,
    "drift.min_agreement": _optional(parse_fraction),
    "drift.max_drop": _optional(parse_fraction),
    "drift.min_sqnr": _optional(_finite_float),
    "drift.allow_collapse": _parse_bool,
    "drift.slices": _parse_slices,
    "drift.layers": _parse_bool,
    "drift.paths": parse_paths,
    "drift.detections": _parse_detections,
    "drift.min_recall": _optional(parse_fraction),
    "drift.detection_score": parse_fraction,
    "drift.eval": _optional(str),
    "tune.enabled": _parse_bool,
    "tune.max_seconds": _parse_seconds,
    "tune.max_candidates": _parse_count,
    "tune.validation": _parse_validation,
    "tune.max_wide_fraction": parse_fraction,
    "tune.max_float_layers": _parse_limit,
    "tune.precisions": _parse_precisions,
    "tune.folds": _parse_count,
    "model.name": _optional(_parse_name),
    "model.version": _parse_text,
    "model.author": _parse_text,
    "model.license": _parse_text,
    "model.description": _parse_text,
    "model.outputs": _parse_output_semantics,
    "compat.devices": _parse_devices,
    "compat.require": _parse_devices,
    "compat.compile": _parse_bool,
    "compat.artefacts": _parse_bool,
}
# Short forms: ``tune = true`` in a config file means ``[tune] enabled = true``.
ALIASES = {"tune": "tune.enabled"}
# Options whose value is a table (kept whole, not flattened into dotted keys).
TABLE_KEYS = {"drift.slices", "drift.detections", "model.outputs"}

ENV_KEYS = {
    "EDGEPACK_OUT": "out",
    "EDGEPACK_FORCE": "force",
    "EDGEPACK_NUM_CALIB": "calibration.num_samples",
    "EDGEPACK_SEED": "calibration.seed",
    "EDGEPACK_DRIFT_SAMPLES": "drift.samples",
    "EDGEPACK_MIN_AGREEMENT": "drift.min_agreement",
    "EDGEPACK_MAX_DROP": "drift.max_drop",
    "EDGEPACK_MIN_SQNR": "drift.min_sqnr",
    "EDGEPACK_ALLOW_COLLAPSE": "drift.allow_collapse",
    "EDGEPACK_LAYERS": "drift.layers",
    "EDGEPACK_PATHS": "drift.paths",
    "EDGEPACK_MIN_RECALL": "drift.min_recall",
    "EDGEPACK_EVAL": "drift.eval",
    "EDGEPACK_TUNE": "tune.enabled",
    "EDGEPACK_TUNE_SECONDS": "tune.max_seconds",
    "EDGEPACK_TUNE_PRECISIONS": "tune.precisions",
    "EDGEPACK_MODEL_VERSION": "model.version",
    "EDGEPACK_REQUIRE_NPU": "compat.require",
}
# EDGEPACK_* variables that are not build options (read by scripts, not by the resolver).
NON_OPTION_ENV = {"EDGEPACK_MODELS"}


@dataclass(frozen=True)
class Thresholds:
    """Drift budget. ``None`` switches a threshold off."""

    min_agreement: float | None = 0.99
    max_drop: float | None = 0.01
    min_sqnr: float | None = None
    allow_collapse: bool = False  # a collapsed output channel is reported but does not fail
    min_recall: float | None = 0.9  # of the float model's detections, on detection outputs
    detection_score: float = 0.25  # score a detection needs to count (Ultralytics' default)


@dataclass(frozen=True)
class TuneOptions:
    """The calibration search (:mod:`edgepack.tune`): whether it runs, its bounds, and the
    share of the calibration set it validates candidates on."""

    enabled: bool = False
    max_seconds: float = 600.0
    max_candidates: int = 8
    validation: float = 0.2
    max_wide_fraction: float = 0.25  # of the layers, the most that mixed precision widens
    # of those, the most that may go float (where int16 does not hold and the target can)
    max_float_layers: int = 4
    precisions: tuple[str, ...] = ("int16", "float")  # the ladder, where the target has them
    folds: int = (
        5  # k-fold: every calibration sample validated once; 1: the last `validation` share
    )


@dataclass(frozen=True)
class CompatOptions:
    """NPU placement (``[compat]``): the devices each bundle is placed on, those the build
    requires it to be wholly on (the gate), whether the vendor compilers also compile
    (partitioning alone can be optimistic), and whether the compiled models ship in the
    bundle (``npu/<device>.<ext>``)."""

    devices: tuple[str, ...] = ()
    require: tuple[str, ...] = ()
    compile: bool = True
    artefacts: bool = False

    @property
    def all_devices(self) -> tuple[str, ...]:
        """The listed devices, then the required ones not listed."""
        from edgepack.placement import unique_names

        return unique_names((*self.devices, *self.require))


@dataclass(frozen=True)
class BuildOptions:
    """Everything one target's build needs to know, resolved from all layers."""

    profile: TargetProfile
    settings: Any
    out_dir: Path
    force: bool = False
    num_calib: int = 200
    seed: int = 0
    drift_samples: int = 500
    thresholds: Thresholds = Thresholds()
    slices: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)
    layers: bool = False  # per-layer drift of the build's held-out samples, in drift.json
    paths: tuple[str, ...] = ()  # execution paths to check; () = every path the host has
    detections: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # the evaluation set the build's drift check runs on (None: a held-out part of the
    # calibration set); the whole calibration set then calibrates
    eval_dir: Path | None = None
    tune: TuneOptions = TuneOptions()
    # paths recorded in a bundle are relative to this folder (the project config's, else the
    # working directory), so a bundle names no folder of the build machine
    project_root: Path = Path(".")
    # SOURCE_DATE_EPOCH: the manifest's ``created`` time, for byte-identical rebuilds
    source_date_epoch: int | None = None
    # [model]: the app-facing name, version, author, licence
    model: ModelInfo = dataclasses.field(default_factory=ModelInfo)
    compat: CompatOptions = CompatOptions()


@dataclass(frozen=True)
class CheckOptions:
    """What a drift check needs: how many samples, the budget, the declared slices, whether
    to measure per layer, and on which execution paths (() = all the host has)."""

    drift_samples: int = 500
    thresholds: Thresholds = Thresholds()
    slices: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)
    layers: bool = False
    paths: tuple[str, ...] = ()
    detections: Mapping[str, str] = dataclasses.field(default_factory=dict)


_DEFAULTS: dict[str, Any] = {
    "out": "bundles",
    "force": False,
    "calibration.num_samples": 200,
    "calibration.seed": 0,
    "drift.samples": 500,
    "drift.min_agreement": Thresholds.min_agreement,
    "drift.max_drop": Thresholds.max_drop,
    "drift.min_sqnr": Thresholds.min_sqnr,
    "drift.allow_collapse": Thresholds.allow_collapse,
    "drift.slices": {},
    "drift.layers": False,
    "drift.paths": (),
    "drift.detections": {},
    "drift.min_recall": Thresholds.min_recall,
    "drift.detection_score": Thresholds.detection_score,
    "drift.eval": None,
    "tune.enabled": TuneOptions.enabled,
    "tune.max_seconds": TuneOptions.max_seconds,
    "tune.max_candidates": TuneOptions.max_candidates,
    "tune.validation": TuneOptions.validation,
    "tune.max_wide_fraction": TuneOptions.max_wide_fraction,
    "tune.max_float_layers": TuneOptions.max_float_layers,
    "tune.precisions": TuneOptions.precisions,
    "tune.folds": TuneOptions.folds,
    "model.name": None,
    "model.version": "",
    "model.author": "",
    "model.license": "",
    "model.description": "",
    "model.outputs": {},
    "compat.devices": CompatOptions.devices,
    "compat.require": CompatOptions.require,
    "compat.compile": CompatOptions.compile,
    "compat.artefacts": CompatOptions.artefacts,
}


# ---------------------------------------------------------------------------- layers


def profile_layer(profile: TargetProfile) -> dict[str, Any]:
    """The option keys a profile sets, flattened to dotted keys."""
    layer = {}
    for section in ("calibration", "drift", "settings", "tune", "compat"):
        for key, value in getattr(profile, section).items():
            layer[f"{section}.{key}"] = value
    return _checked(layer, f"profile {profile.source}", allow_settings=True)


def project_root(cwd: Path) -> Path:
    """The folder of the project config found from ``cwd`` (see :func:`find_config`), else
    ``cwd``: what paths recorded in bundles are relative to."""
    config = find_config(cwd)
    return (config[0].parent if config else cwd).resolve()


def source_date_epoch(environ: Mapping[str, str]) -> int | None:
    """``SOURCE_DATE_EPOCH`` (reproducible-builds.org): whole seconds since 1970, or None."""
    value = environ.get("SOURCE_DATE_EPOCH")
    if value is None or value == "":
        return None
    if not value.strip().isdigit():
        raise ConfigError(
            f"SOURCE_DATE_EPOCH must be a whole number of seconds since 1970, got {value!r}"
        )
    return int(value)


def find_config(start: Path) -> tuple[Path, dict[str, Any]] | None:
    """The nearest ``edgepack.toml`` or ``pyproject.toml`` with ``[tool.edgepack]``."""
    for folder in [start, *start.parents]:
        own = folder / "edgepack.toml"
        if own.is_file():
            return own, _load_toml(own)
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            table = _load_toml(pyproject).get("tool", {}).get("edgepack")
            if table is not None:
                return pyproject, table
        if (folder / ".git").exists():
            break
    return None


def config_layer(config: tuple[Path, dict[str, Any]] | None, target: str) -> dict[str, Any]:
    """Generic keys of the project config, then its ``[targets.<target>]`` table."""
    if config is None:
        return {}
    path, table = config
    targets = table.get("targets", {})
    if not isinstance(targets, dict):
        raise ConfigError(f"{path}: 'targets' must be a table of per-target tables")
    layer = _flatten({k: v for k, v in table.items() if k != "targets"}, f"{path}")
    checked = _checked(layer, str(path), allow_settings=False)
    per_target = targets.get(target, {})
    if not isinstance(per_target, dict):
        raise ConfigError(f"{path}: targets.{target} must be a table")
    target_layer = _flatten(per_target, f"{path} [targets.{target}]")
    checked.update(_checked(target_layer, f"{path} [targets.{target}]", allow_settings=True))
    if checked.get("drift.eval") is not None:  # a path in the config is the config's
        checked["drift.eval"] = str(path.parent / checked["drift.eval"])
    return checked


def env_layer(environ: Mapping[str, str]) -> dict[str, Any]:
    """``EDGEPACK_*`` variables; an unknown one is an error (a typo must not pass silently)."""
    layer = {}
    for name, value in sorted(environ.items()):
        if not name.startswith("EDGEPACK_") or name in NON_OPTION_ENV:
            continue
        if name not in ENV_KEYS:
            known = ", ".join(sorted(ENV_KEYS))
            raise ConfigError(f"unknown environment variable {name} (known: {known})")
        try:
            layer.update(_checked({ENV_KEYS[name]: value}, name, allow_settings=False))
        except ConfigError as exc:  # name the variable the user set, not the option
            raise ConfigError(
                str(exc).replace(f"{name}: {ENV_KEYS[name]}: ", f"{name}: ")
            ) from None
    return layer


def cli_layer(values: Mapping[str, Any]) -> dict[str, Any]:
    """Flags given on the command line (``None`` means: not given)."""
    layer = {key: value for key, value in values.items() if value is not None}
    return _checked(layer, "command line", allow_settings=True)


# ---------------------------------------------------------------------------- resolution


def resolve_build_options(
    profile: TargetProfile,
    settings_type: type,
    cli: Mapping[str, Any],
    cwd: Path,
    environ: Mapping[str, str],
    overrides: Overrides | None = None,
) -> BuildOptions:
    """Merge every layer for one target and validate the result (``--set`` overrides are
    command line, below the named flags)."""
    merged = _merge(
        _DEFAULTS,
        profile_layer(profile),
        config_layer(find_config(cwd), profile.name),
        env_layer(environ),
        {} if overrides is None else override_layer(overrides, profile.name, settings_type),
        cli_layer(cli),
    )
    out = Path(merged["out"])
    return BuildOptions(
        profile=profile,
        settings=_make_settings(settings_type, merged, profile),
        out_dir=out if out.is_absolute() else cwd / out,
        force=merged["force"],
        num_calib=merged["calibration.num_samples"],
        seed=merged["calibration.seed"],
        drift_samples=merged["drift.samples"],
        thresholds=_thresholds(merged),
        slices=merged["drift.slices"],
        layers=merged["drift.layers"],
        paths=merged["drift.paths"],
        detections=merged["drift.detections"],
        eval_dir=None if merged["drift.eval"] is None else cwd / merged["drift.eval"],
        tune=_from_section(TuneOptions, merged, "tune"),
        project_root=project_root(cwd),
        source_date_epoch=source_date_epoch(environ),
        model=_from_section(ModelInfo, merged, "model"),
        compat=_from_section(CompatOptions, merged, "compat"),
    )


def _from_section(kind: type[T], merged: Mapping[str, Any], section: str) -> T:
    """A frozen options dataclass whose fields are the ``section.<field>`` keys."""
    return kind(**{f.name: merged[f"{section}.{f.name}"] for f in dataclasses.fields(kind)})  # type: ignore[arg-type]


def resolve_check_options(
    profile_drift: Mapping[str, Any],
    target: str,
    cli: Mapping[str, Any],
    cwd: Path,
    environ: Mapping[str, str],
) -> CheckOptions:
    """Thresholds for ``check``: the profile's drift table recorded in the bundle, then config,
    environment and flags."""
    merged = _merge(
        _DEFAULTS,
        check_options_layer(profile_drift),
        config_layer(find_config(cwd), target),
        env_layer(environ),
        cli_layer(cli),
    )
    return CheckOptions(
        drift_samples=merged["drift.samples"],
        thresholds=_thresholds(merged),
        slices=merged["drift.slices"],
        layers=merged["drift.layers"],
        paths=merged["drift.paths"],
        detections=merged["drift.detections"],
    )


def check_options_layer(profile_drift: Mapping[str, Any]) -> dict[str, Any]:
    """The drift table a bundle's manifest records (its profile's), validated as options."""
    if not isinstance(profile_drift, Mapping):
        raise ConfigError(f"expected a table, got {profile_drift!r}")
    profile = {f"drift.{k}": v for k, v in profile_drift.items()}
    return _checked(profile, "recorded profile drift", allow_settings=False)


def _thresholds(merged: Mapping[str, Any]) -> Thresholds:
    return Thresholds(
        min_agreement=merged["drift.min_agreement"],
        max_drop=merged["drift.max_drop"],
        min_sqnr=merged["drift.min_sqnr"],
        allow_collapse=merged["drift.allow_collapse"],
        min_recall=merged["drift.min_recall"],
        detection_score=merged["drift.detection_score"],
    )


def _merge(*layers: Mapping[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(layer)
    return merged


def _make_settings(settings_type: type, merged: Mapping[str, Any], profile: TargetProfile) -> Any:
    values = {k.split(".", 1)[1]: v for k, v in merged.items() if k.startswith("settings.")}
    fields = {f.name: f for f in dataclasses.fields(settings_type)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {sorted(unknown)} for backend {profile.backend!r} "
            f"(known: {sorted(fields)})"
        )
    try:
        return settings_type(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"target {profile.name!r}: {exc}") from None


def _flatten(table: Mapping[str, Any], origin: str, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and dotted not in TABLE_KEYS:
            if prefix:
                raise ConfigError(f"{origin}: unexpected table {dotted!r}")
            flat.update(_flatten(value, origin, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def _checked(layer: Mapping[str, Any], origin: str, allow_settings: bool) -> dict[str, Any]:
    checked = {}
    for given, value in layer.items():
        key = ALIASES.get(given, given)
        if key.startswith("settings.") and allow_settings:
            checked[key] = value
            continue
        parser = GENERIC_KEYS.get(key)
        if parser is None:
            raise ConfigError(f"{origin}: unknown option {key!r} (known: {sorted(GENERIC_KEYS)})")
        try:
            checked[key] = parser(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{origin}: {key}: {exc}") from None
    return checked


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def environ_snapshot() -> dict[str, str]:
    """The process environment, read once."""
    return dict(os.environ)
