"""Target profiles: TOML data files that say how to build for one kind of device.

The built-in profiles live in the repository's ``targets/`` folder and are installed with
the wheel. A user may pass a path to a profile of their own; it may start from a built-in
one with ``extends = "<name>"`` in its ``[profile]`` table.

A profile file has these tables (unknown tables or keys are errors)::

    [profile]      name, backend, description, firmware_note, extends
    [settings]     backend-specific keys, checked against the backend's settings class
    [calibration]  num_samples, seed
    [drift]        samples, min_agreement, max_drop, min_sqnr, ...
    [tune]         enabled, max_seconds, max_candidates, validation
    [compat]       devices, require, compile, artefacts (NPU placement)
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgepack.errors import ConfigError

PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
PROFILE_KEYS = {"name", "backend", "description", "firmware_note", "extends"}
SECTIONS = {"profile", "settings", "calibration", "drift", "tune", "compat"}


@dataclass(frozen=True)
class TargetProfile:
    """A loaded, validated target profile (its option sections are merged later)."""

    name: str
    backend: str
    description: str
    firmware_note: str | None
    source: str
    sha256: str
    settings: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    drift: dict[str, Any] = field(default_factory=dict)
    tune: dict[str, Any] = field(default_factory=dict)
    compat: dict[str, Any] = field(default_factory=dict)


def builtin_profiles_dir() -> Path:
    """Where the built-in profiles are: inside the wheel, or ``targets/`` in a checkout."""
    packaged = Path(__file__).parent / "_profiles"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "targets"


def builtin_firmware_notes_dir() -> Path:
    """Where the deployment notes the built-in profiles link are: inside the wheel, or
    ``firmware-notes/`` in a checkout."""
    packaged = Path(__file__).parent / "_firmware_notes"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "firmware-notes"


def firmware_note_file(profile: TargetProfile) -> Path | None:
    """The file of the profile's deployment note (which every bundle of the profile ships):
    relative to the profile file's folder, or one of the notes edgepack ships."""
    if profile.firmware_note is None:
        return None
    note = Path(profile.firmware_note)
    candidates = [builtin_firmware_notes_dir() / note.name]
    if not profile.source.startswith("builtin:"):
        candidates.insert(0, Path(profile.source).parent / note)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"profile {profile.name!r}: firmware_note {profile.firmware_note!r} not found "
        f"(looked in {', '.join(str(c.parent) for c in candidates)})"
    )


def builtin_profile_names() -> list[str]:
    """Names of the built-in profiles, sorted."""
    return sorted(p.stem for p in builtin_profiles_dir().glob("*.toml"))


def load_profile(name_or_path: str) -> TargetProfile:
    """Load a built-in profile by name, or a profile file by path."""
    path = _locate(name_or_path)
    data = _read_toml(path)
    base_name = data.get("profile", {}).get("extends")
    if base_name is not None:
        if not isinstance(base_name, str) or base_name not in builtin_profile_names():
            raise ConfigError(
                f"{path}: 'extends' must name a built-in profile "
                f"({', '.join(builtin_profile_names())}), got {base_name!r}"
            )
        data = _overlay(_read_toml(_locate(base_name)), data)
    builtin = path.parent == builtin_profiles_dir()
    return _profile_from_data(data, path, f"builtin:{path.stem}" if builtin else str(path))


def _locate(name_or_path: str) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or candidate.parent != Path("."):
        if not candidate.is_file():
            raise ConfigError(f"target profile file not found: {name_or_path}")
        return candidate
    path = builtin_profiles_dir() / f"{name_or_path}.toml"
    if not path.is_file():
        known = ", ".join([*builtin_profile_names(), "all"])
        raise ConfigError(f"unknown target {name_or_path!r} (known: {known}, or a .toml path)")
    return path


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    unknown = set(data) - SECTIONS
    if unknown:
        raise ConfigError(
            f"{path}: unknown table(s) {sorted(unknown)}; allowed: {sorted(SECTIONS)}"
        )
    for section, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{section}] must be a table")
    unknown_keys = set(data.get("profile", {})) - PROFILE_KEYS
    if unknown_keys:
        raise ConfigError(f"{path}: unknown key(s) in [profile]: {sorted(unknown_keys)}")
    return data


def _overlay(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = {section: dict(table) for section, table in base.items()}
    for section, table in top.items():
        merged.setdefault(section, {}).update(table)
    merged["profile"].pop("extends", None)
    return merged


def _profile_from_data(data: dict[str, Any], path: Path, source: str) -> TargetProfile:
    header = data.get("profile", {})
    for key in ("name", "backend", "description"):
        if not isinstance(header.get(key), str) or not header[key]:
            raise ConfigError(f"{path}: [profile] needs a non-empty string {key!r}")
    if not PROFILE_NAME.fullmatch(header["name"]):
        raise ConfigError(
            f"{path}: [profile] name {header['name']!r} must be letters, digits, '.', '_' or '-' "
            "(at most 64, starting with a letter or digit): it names the bundle folder"
        )
    note = header.get("firmware_note")
    if note is not None and not isinstance(note, str):
        raise ConfigError(f"{path}: [profile] firmware_note must be a string")
    return TargetProfile(
        name=header["name"],
        backend=header["backend"],
        description=header["description"],
        firmware_note=note,
        source=source,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        settings=dict(data.get("settings", {})),
        calibration=dict(data.get("calibration", {})),
        drift=dict(data.get("drift", {})),
        tune=dict(data.get("tune", {})),
        compat=dict(data.get("compat", {})),
    )
