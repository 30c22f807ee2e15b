"""Atomic bundle writing and manifest reading."""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgepack.bundle import (
    read_manifest,
    remove_stale_partials,
    seal_manifest,
    staged_bundle,
    verify_bundle_files,
)
from edgepack.errors import EXIT_OUTPUT, BundleError, BundleExistsError, OutputError


def test_failed_build_leaves_nothing(tmp_path: Path) -> None:
    final = tmp_path / "out" / "m-tflite"
    with pytest.raises(RuntimeError), staged_bundle(final, force=False) as staging:
        (staging / "model.tflite").write_bytes(b"half")
        raise RuntimeError("converter crashed")
    assert not final.exists()
    assert not (tmp_path / "out").exists()  # the folder it created for the bundle is gone too


def test_success_renames_into_place_with_normal_permissions(tmp_path: Path) -> None:
    final = tmp_path / "m-tflite"
    with staged_bundle(final, force=False) as staging:
        (staging / "manifest.json").write_text("{}")
    assert (final / "manifest.json").read_text() == "{}"
    assert final.stat().st_mode & 0o055 == 0o055  # group/others may read it
    assert [p.name for p in tmp_path.iterdir()] == ["m-tflite"]


def test_existing_bundle_needs_force(tmp_path: Path) -> None:
    final = tmp_path / "m-tflite"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with pytest.raises(BundleExistsError, match="pass --force"), staged_bundle(final, False):
        pass
    with staged_bundle(final, force=True) as staging:
        (staging / "new.txt").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m-tflite"]


def test_failed_forced_rebuild_keeps_the_old_bundle(tmp_path: Path) -> None:
    final = tmp_path / "m-tflite"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), staged_bundle(final, force=True):
        raise RuntimeError("boom")
    assert (final / "old.txt").read_text() == "old"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no manifest.json"),
        ("{not json", "not valid JSON"),
        ('{"schema_version": 1}', "schema_version 1 is not supported"),
        ('{"schema_version": 2}', "no manifest_sha256: the manifest was edited"),
        (
            json.dumps(
                {
                    k: {}
                    for k in (
                        "target",
                        "model",
                        "inputs",
                        "outputs",
                        "preprocessing",
                        "source",
                        "calibration",
                        "versions",
                        "drift",
                        "files",
                    )
                }
                | {"schema_version": 99}
            ),
            "schema_version 99 is not supported",
        ),
    ],
)
def test_manifest_problems(tmp_path: Path, content: str | None, message: str) -> None:
    if content is not None:
        (tmp_path / "manifest.json").write_text(content)
    with pytest.raises(BundleError, match=message):
        read_manifest(tmp_path)


def test_model_file_hash_is_verified(tmp_path: Path) -> None:
    (tmp_path / "model.tflite").write_bytes(b"abc")
    manifest = {"model": {"file": "model.tflite", "sha256": "0" * 64}}
    with pytest.raises(BundleError, match="sha256 differs"):
        verify_bundle_files(tmp_path, manifest)


def _hashed_bundle(folder: Path) -> dict:
    from edgepack.bundle import file_sha256

    (folder / "model.tflite").write_bytes(b"model")
    (folder / "drift.json").write_text("{}\n")
    (folder / "labels.txt").write_text("a\nb\n")
    files = {
        name: file_sha256(folder / name) for name in ("model.tflite", "drift.json", "labels.txt")
    }
    return {"model": {"file": "model.tflite", "sha256": files["model.tflite"]}, "files": files}


def test_every_hashed_file_is_verified(tmp_path: Path) -> None:
    manifest = _hashed_bundle(tmp_path)
    assert verify_bundle_files(tmp_path, manifest) == tmp_path / "model.tflite"
    (tmp_path / "labels.txt").write_text("a\nc\n")
    with pytest.raises(BundleError, match=r"labels.txt: sha256 differs"):
        verify_bundle_files(tmp_path, manifest)
    (tmp_path / "labels.txt").write_text("a\nb\n")
    (tmp_path / "drift.json").unlink()
    with pytest.raises(BundleError, match=r"drift.json \(hashed in the manifest\) is missing"):
        verify_bundle_files(tmp_path, manifest)


@pytest.mark.parametrize("name", ["../model.tflite", "/etc/passwd", "sub/../../model.tflite"])
def test_model_file_outside_the_bundle_is_refused(tmp_path: Path, name: str) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    manifest = _hashed_bundle(tmp_path)
    manifest["model"]["file"] = name
    manifest["files"] = {}
    with pytest.raises(BundleError, match="lies outside the bundle"):
        verify_bundle_files(bundle, manifest)


def _io(**changes: object) -> dict:
    entry = {"name": "x", "shape": [1, 8, 8, 3], "dtype": "int8",
             "quantization": {"scale": 0.5, "zero_point": -3}}  # fmt: skip
    entry.update(changes)
    return entry


def test_the_manifest_io_must_be_the_model_files() -> None:
    from edgepack.backends.base import ModelIO, QuantParams
    from edgepack.bundle import verify_model_io

    file_in = [ModelIO("x", (1, 8, 8, 3), "int8", QuantParams(0.5, -3))]
    file_out = [ModelIO("y", (1, 10), "float32"), ModelIO("label", None, "dictionary")]
    out = {"name": "y", "shape": [1, 10], "dtype": "float32", "quantization": None}
    verify_model_io({"inputs": [_io()], "outputs": [out]}, (file_in, file_out))  # extra output ok
    cases = [
        ([_io(shape=[1, 8, 8, 1])], "has shape [1, 8, 8, 1]; the model file [1, 8, 8, 3]"),
        ([_io(dtype="uint8")], "has dtype uint8; the model file int8"),
        ([_io(quantization=None)], "says not quantized; the model file disagrees"),
        ([_io(quantization={"scale": 0.25, "zero_point": -3})], "has scale 0.25, zero point -3"),
        (
            [_io(quantization={"scale": 0.5, "zero_point": 0})],
            "zero point 0; the model file 0.5, -3",
        ),
        ([_io(name="z")], "manifest inputs do not match the model file's (z, (unlisted) x"),
        ([], "(unlisted) x"),
    ]
    for inputs, message in cases:
        with pytest.raises(BundleError, match=re.escape(message)) as caught:
            verify_model_io({"inputs": inputs, "outputs": [out]}, (file_in, file_out))
        assert caught.value.exit_code == 6
    with pytest.raises(BundleError, match="manifest outputs do not match"):
        verify_model_io({"inputs": [_io()], "outputs": [dict(out, name="w")]}, (file_in, file_out))


@pytest.mark.parametrize("below", [False, True])
def test_an_output_path_that_is_a_file_is_a_config_error(tmp_path: Path, below: bool) -> None:
    """``--out`` naming a file (or a folder below a file) is refused before any work, in one
    line with exit 2 (it was an internal error after the conversion)."""
    from edgepack.bundle import ensure_writable
    from edgepack.errors import ConfigError

    afile = tmp_path / "afile"
    afile.write_text("x")
    out = afile / "deeper" if below else afile
    with pytest.raises(ConfigError, match="afile exists and is not a folder") as caught:
        ensure_writable(out / "m-tflite", force=False)
    assert caught.value.exit_code == 2 and afile.read_text() == "x"


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda m: m["target"].pop("backend"), "missing target.backend"),
        (lambda m: m.update(inputs="image"), "inputs must be a list"),
        (lambda m: m.update(outputs=[1]), "every entry of outputs must be an object"),
        (lambda m: m["model"].update(file=3), "model.file must be a string"),
        (lambda m: m.update(labels="cats"), "labels must be a list or null"),
        (lambda m: m["model"].pop("size_bytes"), "missing model.size_bytes"),
        (lambda m: m["inputs"][0].pop("name"), r"missing inputs\[0\].name"),
        (lambda m: m["inputs"][0]["quantization"].pop("scale"), "quantization.scale"),
        (lambda m: m["outputs"][0].update(shape=["a"]), "shape must be a list of integers"),
        (lambda m: m["drift"].pop("samples"), "missing drift.samples"),
        (lambda m: m["drift"].update(min_sqnr_db=True), "min_sqnr_db must be an integer or"),
        (lambda m: m["source"].pop("path"), "missing source.path"),
        (lambda m: m["target"].update(drift=[1]), "target.drift must be an object"),
    ],
)
def test_a_damaged_manifest_is_a_bundle_error(tmp_path: Path, damage, message: str) -> None:  # type: ignore[no-untyped-def]
    """Fields check and inspect read with the wrong type: one bundle error line (exit 6),
    where they used to be internal errors."""
    from edgepack.bundle import MANIFEST_SCHEMA_VERSION, read_manifest
    from edgepack.errors import BundleError

    tensor = {"name": "x", "source_name": "x", "shape": [1, 4], "dtype": "float32"}
    manifest = {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "target": {"profile": "tflite", "backend": "tflite", "description": "d", "drift": {}},
        "model": {"file": "model.tflite", "sha256": "0" * 64, "size_bytes": 1},
        "inputs": [dict(tensor, quantization={"scale": 0.1, "zero_point": 0})],
        "outputs": [dict(tensor, quantization=None)],
        "preprocessing": None,
        "labels": None,
        "source": {"file": "m.keras", "format": "keras", "path": "m.keras", "sha256": "0" * 64},
        "calibration": {"samples": 1, "seed": 0, "method": "minmax", "fingerprint": "0" * 64},
        "versions": {},
        "drift": {
            "samples": 1,
            "runtime": "LiteRT",
            "verdict": "pass",
            "top1_agreement": None,
            "accuracy_drop": None,
            "min_sqnr_db": 30.0,
        },
        "files": {},
    }
    read_manifest_dir = tmp_path / "b"
    read_manifest_dir.mkdir()
    (read_manifest_dir / "manifest.json").write_text(json.dumps(seal_manifest(manifest)))
    assert read_manifest(read_manifest_dir)["target"]["backend"] == "tflite"
    damage(manifest)
    # resealed: the damage is in what a build wrote (an edit alone fails the seal first)
    (read_manifest_dir / "manifest.json").write_text(json.dumps(seal_manifest(manifest)))
    with pytest.raises(BundleError, match=message) as caught:
        read_manifest(read_manifest_dir)
    assert caught.value.exit_code == 6


def test_partial_folders_of_dead_builds_are_removed_and_running_ones_kept(tmp_path: Path) -> None:
    final = tmp_path / "m-tflite"
    dead = tmp_path / ".m-tflite.dead1.partial"  # killed with SIGKILL: its lock file is left
    dead.mkdir()
    (dead / "model.tflite").write_bytes(b"half")
    (tmp_path / ".m-tflite.dead1.partial.lock").touch()
    old = tmp_path / ".m-tflite.old2.partial"  # no lock file, minutes old
    old.mkdir()
    minutes_ago = time.time() - 600
    os.utime(old, (minutes_ago, minutes_ago))
    young = tmp_path / ".m-tflite.young.partial"  # no lock yet: a build that just started
    young.mkdir()
    other = tmp_path / ".m2-tflite.dead3.partial"  # another bundle's: not ours to judge
    other.mkdir()
    running = tmp_path / ".m-tflite.run4.partial"
    running.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time; h = open(sys.argv[1], 'a'); "
            "fcntl.flock(h, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)",
            str(tmp_path / ".m-tflite.run4.partial.lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with staged_bundle(final, force=False) as staging:
            (staging / "manifest.json").write_text("{}")
    finally:
        holder.kill()
        holder.wait()
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [
        ".m-tflite.run4.partial",
        ".m-tflite.run4.partial.lock",
        ".m-tflite.young.partial",
        ".m2-tflite.dead3.partial",
        "m-tflite",
    ]
    # once its build is gone, the running one is stale too
    assert remove_stale_partials(final) == [running]


@pytest.mark.parametrize(
    ("code", "reason"),
    [(errno.ENOSPC, "No space left on device"), (errno.EROFS, "Read-only file system")],
)
def test_a_full_or_read_only_disk_is_an_output_error(
    tmp_path: Path, code: int, reason: str
) -> None:
    final = tmp_path / "out" / "m-tflite"
    with pytest.raises(OutputError) as caught, staged_bundle(final, force=False) as staging:
        raise OSError(code, reason, str(staging / "model.tflite"))
    assert caught.value.exit_code == EXIT_OUTPUT == 7
    assert str(caught.value).startswith(f"cannot write the bundle {final}: {reason}")
    assert not (tmp_path / "out").exists()


def test_permission_errors_count_as_output_errors_only_on_the_bundle_side(tmp_path: Path) -> None:
    final = tmp_path / "out" / "m-tflite"
    with pytest.raises(OutputError), staged_bundle(final, force=False) as staging:
        raise PermissionError(errno.EACCES, "Permission denied", str(staging / "labels.txt"))
    elsewhere = tmp_path / "model.keras"  # reading an input: not the bundle's problem
    with pytest.raises(PermissionError), staged_bundle(final, force=False):
        raise PermissionError(errno.EACCES, "Permission denied", str(elsewhere))


def test_an_edited_manifest_fails_its_seal(tmp_path: Path) -> None:
    manifest = seal_manifest({"schema_version": 2, "labels": ["cat", "dog"]})
    (tmp_path / "manifest.json").write_text(json.dumps(manifest, indent=2))
    with pytest.raises(BundleError, match="missing key"):  # sealed: reaches the field checks
        read_manifest(tmp_path)
    manifest["labels"] = ["dog", "cat"]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest, indent=2))
    with pytest.raises(BundleError, match="manifest_sha256 differs: the manifest was edited"):
        read_manifest(tmp_path)
