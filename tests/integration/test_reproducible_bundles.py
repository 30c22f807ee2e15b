"""Bundles are reproducible and relocatable: the same inputs (the tiny Keras model and its
labelled images) built in two project folders with ``SOURCE_DATE_EPOCH`` give byte-identical
bundles (every file of every target, the Core ML
package's insides included); no bundle file names a folder of the build machine; the profile's
deployment note ships inside; and a check finds the source model again after the whole
project folder moved."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from edgepack import api
from edgepack.bundle import FIRMWARE_NOTE, file_sha256
from edgepack.errors import ConfigError
from tests.conftest import DIGITS_CALIB, DIGITS_MODEL, assert_valid_manifest

MODEL = "tiny.keras"

TARGETS = ["tflite", "onnx", "coreml"]
EPOCH = "1700000000"  # 2023-11-14T22:13:20Z
REPO = Path(__file__).resolve().parents[2]


def _project(folder: Path, tiny_model_dir: Path) -> Path:
    """A project folder holding the tiny model and its calibration set."""
    folder.mkdir(parents=True)
    shutil.copy(tiny_model_dir / MODEL, folder / MODEL)
    shutil.copytree(tiny_model_dir / "calib", folder / "calib")
    return folder


def _build(project: Path) -> list[api.BuildResult]:
    return api.build(
        project / MODEL,
        TARGETS,
        project / "calib",
        out=project / "bundles",
        num_calib=30,
        min_agreement="off",
        max_drop="off",
        min_sqnr="off",
        cwd=project,
        environ={"SOURCE_DATE_EPOCH": EPOCH},
    )


def _files(bundle: Path) -> dict[str, bytes]:
    return {
        path.relative_to(bundle).as_posix(): path.read_bytes()
        for path in sorted(bundle.rglob("*"))
        if path.is_file()
    }


def _strings(document: Any) -> list[str]:
    if isinstance(document, dict):
        return [s for value in document.values() for s in _strings(value)]
    if isinstance(document, list):
        return [s for value in document for s in _strings(value)]
    return [document] if isinstance(document, str) else []


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("reproducible")
    first = _project(root / "first", tiny_model_dir)
    second = _project(root / "elsewhere" / "second", tiny_model_dir)
    return {"root": root, "first": first, "results": _build(first), "second": _build(second)}


def test_two_builds_in_two_folders_are_byte_identical(builds: dict[str, Any]) -> None:
    for one, other in zip(builds["results"], builds["second"], strict=True):
        files, again = _files(one.bundle), _files(other.bundle)
        assert sorted(files) == sorted(again)
        different = [name for name in files if files[name] != again[name]]
        assert not different, (one.target, different)
        assert one.manifest["created"] == "2023-11-14T22:13:20+00:00"


def test_no_bundle_file_names_a_build_host_folder(builds: dict[str, Any]) -> None:
    root = str(builds["root"])
    for result in builds["results"]:
        assert_valid_manifest(result.manifest)
        for name in ("manifest.json", "drift.json"):
            document = json.loads((result.bundle / name).read_text())
            leaks = [s for s in _strings(document) if root in s or s.startswith("/")]
            assert not leaks, (result.target, name, leaks)
        manifest = result.manifest
        assert manifest["source"]["path"] == MODEL
        assert manifest["calibration"]["path"] == "calib"
        assert manifest["target"]["profile_source"] == f"builtin:{result.target}"


def test_the_deployment_note_ships_in_the_bundle(builds: dict[str, Any]) -> None:
    for result in builds["results"]:
        target = result.manifest["target"]
        assert target["firmware_note"] == FIRMWARE_NOTE
        shipped = result.bundle / FIRMWARE_NOTE
        linked = REPO / target["firmware_note_source"]
        assert shipped.read_bytes() == linked.read_bytes()
        assert result.manifest["files"][FIRMWARE_NOTE] == file_sha256(shipped)


def test_check_finds_the_source_after_the_project_moved(builds: dict[str, Any]) -> None:
    moved = builds["root"] / "moved"
    shutil.copytree(builds["first"], moved)
    bundle = moved / "bundles" / "tiny-tflite"
    result = api.check(bundle, moved / "calib", samples=20, cwd=moved, environ={})
    assert result.report.samples == 20
    elsewhere = builds["root"] / "outside"  # checked from another folder: the bundle's
    elsewhere.mkdir()  # grandparent (<project>/bundles/<bundle>) holds the source
    assert api.check(bundle, moved / "calib", samples=20, cwd=elsewhere, environ={}).report


def test_a_malformed_source_date_epoch_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SOURCE_DATE_EPOCH"):
        api.build(
            DIGITS_MODEL, ["onnx"], DIGITS_CALIB, out=tmp_path, cwd=tmp_path,
            environ={"SOURCE_DATE_EPOCH": "yesterday"},
        )  # fmt: skip
