"""Bundles on disk: atomic writing, the manifest, and reading a bundle back.

A bundle is a folder ``<model-stem>-<profile>/`` with the model file, ``manifest.json``,
``drift.json``, the profile's deployment note (``firmware-note.md``) and, when the calibration
set has labels, ``labels.txt``. It names no folder of the build machine (paths are relative to
the project root), and with ``SOURCE_DATE_EPOCH`` set two builds of the same inputs are byte
for byte the same. It is written into a
hidden temporary folder beside its final place and renamed at the end, so a failed build
never leaves a half-written bundle behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from edgepack.errors import BundleError, BundleExistsError, ConfigError, output_error

MANIFEST = "manifest.json"
DRIFT = "drift.json"
LABELS = "labels.txt"
FIRMWARE_NOTE = "firmware-note.md"  # the profile's deployment note, shipped with the bundle
MANIFEST_SCHEMA_VERSION = 2
# The manifest's own sha256 (of its canonical JSON without this key): an edited manifest is
# damaged, as an edited model file or labels.txt is.
INTEGRITY_KEY = "manifest_sha256"
SCHEMA_FILE = Path(__file__).parent / "schemas" / "manifest.schema.json"
DRIFT_SCHEMA_FILE = Path(__file__).parent / "schemas" / "drift-report.schema.json"
_REQUIRED = (
    "schema_version",
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


def bundle_path(out_dir: Path, model_path: Path, profile_name: str) -> Path:
    """``OUT/<model-stem>-<profile>``."""
    stem = model_path.name if model_path.is_dir() else model_path.stem
    return out_dir / f"{stem}-{profile_name}"


def ensure_writable(final: Path, force: bool) -> None:
    """Refuse early (before any slow work) to overwrite a bundle without ``force``, or to
    write under an output path that is a file."""
    for folder in (final.parent, *final.parent.parents):
        if folder.exists():
            if not folder.is_dir():
                raise ConfigError(f"{folder} exists and is not a folder: --out needs a folder")
            break
    if final.exists() and not force:
        raise BundleExistsError(f"{final} exists; pass --force to replace it")
    if final.exists() and not final.is_dir():
        raise BundleExistsError(f"{final} exists and is not a bundle folder")


@contextlib.contextmanager
def staged_bundle(final: Path, force: bool) -> Iterator[Path]:
    """A temporary folder that becomes ``final`` only if the block succeeds. A read-only
    file system, a full disk or a folder without write permission is an
    :class:`~edgepack.errors.OutputError` naming the bundle."""
    try:
        with _staged(final, force) as staging:
            yield staging
    except OSError as exc:
        error = output_error(exc, f"the bundle {final}", writing=_below(exc, final.parent))
        if error is None:
            raise
        raise error from None


def _below(exc: OSError, folder: Path) -> bool:
    """Whether the failed operation was on a file in ``folder`` (the bundle's side)."""
    names = [n for n in (exc.filename, exc.filename2) if n]
    return any(Path(os.fsdecode(n)).resolve().is_relative_to(folder.resolve()) for n in names)


@contextlib.contextmanager
def _staged(final: Path, force: bool) -> Iterator[Path]:
    ensure_writable(final, force)
    created_parent = not final.parent.exists()
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(final)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    lock = _hold_lock(staging)
    staging.chmod(0o777 & ~_umask())  # mkdtemp makes it private; a bundle is a normal folder
    try:
        yield staging
        _replace(staging, final, force)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        _release_lock(staging, lock)
        if created_parent:
            with contextlib.suppress(OSError):
                final.parent.rmdir()  # only if empty: another target's bundle may be there
        raise
    _release_lock(staging, lock)


# A partial folder without a lock file this old is left from a build that died before it
# could take its lock (or from an edgepack before locks): no live build is that slow to lock.
_UNLOCKED_PARTIAL_AGE_S = 60.0


def remove_stale_partials(final: Path) -> list[Path]:
    """Remove the hidden ``.<bundle>.*.partial`` folders of builds that died (killed with
    SIGKILL, power lost) beside ``final``. A running build holds an advisory lock on its
    ``.partial.lock`` file until it ends, so only folders whose build is gone are removed."""
    removed: list[Path] = []
    if not final.parent.is_dir():
        return removed
    for staging in sorted(final.parent.glob(f".{glob_escape(final.name)}.*.partial")):
        if staging.is_dir() and _is_stale(staging):
            shutil.rmtree(staging, ignore_errors=True)
            staging.with_name(staging.name + ".lock").unlink(missing_ok=True)
            removed.append(staging)
    return removed


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def _is_stale(staging: Path) -> bool:
    lock = staging.with_name(staging.name + ".lock")
    if not lock.exists():
        import time

        return time.time() - staging.stat().st_mtime > _UNLOCKED_PARTIAL_AGE_S
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; leave it
        return False
    with lock.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # its build is running
        fcntl.flock(handle, fcntl.LOCK_UN)
        return True


def _hold_lock(staging: Path) -> Any:
    try:
        import fcntl
    except ImportError:
        return None
    handle = staging.with_name(staging.name + ".lock").open("a")
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def _release_lock(staging: Path, handle: Any) -> None:
    staging.with_name(staging.name + ".lock").unlink(missing_ok=True)
    if handle is not None:
        handle.close()  # closing releases the lock


def _replace(staging: Path, final: Path, force: bool) -> None:
    ensure_writable(final, force)
    if not final.exists():
        os.replace(staging, final)
        return
    retired = final.with_name(f".{final.name}.old")
    shutil.rmtree(retired, ignore_errors=True)
    os.replace(final, retired)
    os.replace(staging, final)
    shutil.rmtree(retired, ignore_errors=True)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_json(path: Path, data: Any) -> None:
    path.write_text(json_text(data))


def json_text(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n"


def write_report(path: Path, text: str) -> None:
    """A report file outside a bundle (``check --json/--junit/--html``), written beside its
    place and renamed, so a failed write never leaves half a report."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        error = output_error(exc, f"the report {path}", writing=True)
        if error is None:
            raise
        raise error from None


def file_sha256(path: Path) -> str:
    """sha256 of a file, or of a folder (an ``.mlpackage``): names and contents, sorted."""
    from edgepack.frontends.base import sha256_of_path

    return sha256_of_path(path)


def size_bytes(path: Path) -> int:
    """Size of a file, or of every file in a folder."""
    if path.is_file():
        return path.stat().st_size
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


def read_manifest(bundle: Path) -> dict[str, Any]:
    """Read and sanity-check ``manifest.json``; also verify the model file's hash."""
    if not bundle.is_dir():
        raise BundleError(f"{bundle}: no such bundle folder")
    path = bundle / MANIFEST
    if not path.is_file():
        raise BundleError(f"{bundle}: not a bundle (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{path}: not a manifest object")
    version = manifest.get("schema_version", MANIFEST_SCHEMA_VERSION)
    if version != MANIFEST_SCHEMA_VERSION:
        raise BundleError(
            f"{path}: schema_version {version!r} is not supported (this edgepack reads "
            f"{MANIFEST_SCHEMA_VERSION}): rebuild the bundle"
        )
    _check_integrity(manifest, path)
    missing = [key for key in _REQUIRED if key not in manifest]
    if missing:
        raise BundleError(f"{path}: missing key(s) {missing}")
    _check_shapes(manifest, path)
    return manifest


def manifest_digest(manifest: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON (sorted keys, no blanks, UTF-8), without
    :data:`INTEGRITY_KEY`."""
    body = {k: v for k, v in manifest.items() if k != INTEGRITY_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def seal_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest with its own sha256 as the last key (written last by a build)."""
    body = {k: v for k, v in manifest.items() if k != INTEGRITY_KEY}
    return {**body, INTEGRITY_KEY: manifest_digest(body)}


def _check_integrity(manifest: dict[str, Any], path: Path) -> None:
    recorded = manifest.get(INTEGRITY_KEY)
    if recorded is None:
        raise BundleError(
            f"{path}: no {INTEGRITY_KEY}: the manifest was edited; rebuild the bundle"
        )
    if recorded != manifest_digest(manifest):
        raise BundleError(
            f"{path}: {INTEGRITY_KEY} differs: the manifest was edited after the build; "
            "rebuild the bundle"
        )


# The manifest fields check and inspect read, and the JSON type each must have (a damaged
# manifest is a bundle error, not a crash further on).
_FIELD_TYPES: tuple[tuple[tuple[str, ...], type | tuple[type, ...]], ...] = (
    (("target",), dict),
    (("target", "profile"), str),
    (("target", "backend"), str),
    (("model",), dict),
    (("model", "file"), str),
    (("inputs",), list),
    (("outputs",), list),
    (("source",), dict),
    (("calibration",), dict),
    (("versions",), dict),
    (("drift",), dict),
    (("files",), dict),
    (("preprocessing",), (dict, type(None))),
    (("labels",), (list, type(None))),
    (("model", "sha256"), str),
    (("model", "size_bytes"), int),
    (("source", "file"), str),
    (("source", "format"), str),
    (("source", "path"), str),
    (("source", "sha256"), str),
    (("target", "description"), str),
    (("target", "drift"), dict),
    (("calibration", "samples"), int),
    (("calibration", "seed"), int),
    (("calibration", "method"), str),
    (("calibration", "fingerprint"), str),
    (("drift", "samples"), int),
    (("drift", "runtime"), str),
    (("drift", "verdict"), str),
    (("drift", "top1_agreement"), (int, float, type(None))),
    (("drift", "accuracy_drop"), (int, float, type(None))),
    (("drift", "min_sqnr_db"), (int, float)),
)
# What every entry of inputs and outputs needs (check and inspect read each of these).
_TENSOR_TYPES: tuple[tuple[str, type | tuple[type, ...]], ...] = (
    ("name", str),
    ("source_name", str),
    ("shape", list),
    ("dtype", str),
    ("quantization", (dict, type(None))),
)
# Entries a tensor may have (older manifests lack some), with their types when present.
_OPTIONAL_TENSOR_TYPES: tuple[tuple[str, type | tuple[type, ...]], ...] = (
    ("layout", (str, type(None))),
    ("transpose", (list, type(None))),
    ("image", (dict, type(None))),
    ("classes", (list, type(None))),
    ("index", (int, type(None))),
    ("key", (str, type(None))),
    ("semantics", (str, type(None))),
    ("labels", (dict, type(None))),
)


def _check_shapes(manifest: dict[str, Any], path: Path) -> None:
    for keys, expected in _FIELD_TYPES:
        value: Any = manifest
        for key in keys:
            if not isinstance(value, dict) or key not in value:
                raise BundleError(f"{path}: missing {'.'.join(keys)}")
            value = value[key]
        _require(value, expected, ".".join(keys), path)
    _check_sections(manifest, path)
    if manifest["preprocessing"] is not None:
        _check_preprocessing(manifest["preprocessing"], path)
    if not all(isinstance(label, str) for label in manifest["labels"] or []):
        raise BundleError(f"{path}: labels must be a list of strings")
    if not all(isinstance(v, str) for v in manifest["files"].values()):
        raise BundleError(f"{path}: files must map file names to sha256 strings")
    for side in ("inputs", "outputs"):
        for index, item in enumerate(manifest[side]):
            if not isinstance(item, dict):
                raise BundleError(f"{path}: every entry of {side} must be an object")
            _check_tensor(item, f"{side}[{index}]", path)


def _check_sections(manifest: dict[str, Any], path: Path) -> None:
    """The drift summary's execution paths, and the optional tuning, app and compat
    sections."""
    paths = manifest["drift"].get("paths", [])
    if not isinstance(paths, list) or not all(
        isinstance(p, dict) and isinstance(p.get("name"), str) for p in paths
    ):
        raise BundleError(f"{path}: drift.paths must be a list of objects with a name")
    if paths and not isinstance(manifest["drift"].get("path"), str):
        raise BundleError(f"{path}: drift.path must name the worst of drift.paths")
    _require(manifest["drift"].get("data", {}), dict, "drift.data", path)
    for key in ("tuning", "app", "compat"):
        _require(manifest.get(key), (dict, type(None)), key, path)
    if manifest.get("app") is not None:
        for key in ("name", "version"):
            _require(manifest["app"].get(key), str, f"app.{key}", path)
    if manifest.get("compat") is not None:
        recorded_compat(manifest, path)


def recorded_compat(manifest: dict[str, Any], path: Path) -> Any:
    """The manifest's placement report (:class:`edgepack.placement.Compat`), None when the
    bundle records none; a malformed one is a damaged bundle."""
    from edgepack.placement import Compat

    if manifest.get("compat") is None:
        return None
    try:
        return Compat.from_dict(manifest["compat"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BundleError(f"{path}: compat is malformed ({type(exc).__name__}: {exc})") from None


# Preprocessing fields every manifest has (later fields, antialias and fit, have defaults).
_PREPROCESSING_FIELDS = ("size", "resize", "color", "scale", "mean", "std", "layout", "dtype")


def _check_preprocessing(recorded: dict[str, Any], path: Path) -> None:
    """The recorded contract must be one edgepack accepts (the same validation as a
    ``calibration.toml``'s), with every field present."""
    from edgepack.calib.contract import Preprocessing
    from edgepack.errors import CalibrationError

    missing = [key for key in _PREPROCESSING_FIELDS if key not in recorded]
    if missing:
        raise BundleError(f"{path}: missing preprocessing.{missing[0]}")
    fields = {k: v for k, v in recorded.items() if k != "input"}
    # the contract as the calibration set declared it (the source model's layout and dtype)
    fields["layout"] = fields.pop("source_layout", fields["layout"])
    fields["dtype"] = fields.pop("source_dtype", fields["dtype"])
    try:
        Preprocessing.from_dict(fields, "preprocessing")
    except CalibrationError as exc:
        raise BundleError(f"{path}: {exc}") from None
    if not isinstance(recorded.get("input"), str | None):
        raise BundleError(f"{path}: preprocessing.input must be a string")


def _check_tensor(item: dict[str, Any], where: str, path: Path) -> None:
    for key, expected in _TENSOR_TYPES:
        if key not in item:
            raise BundleError(f"{path}: missing {where}.{key}")
        _require(item[key], expected, f"{where}.{key}", path)
    for key, expected in _OPTIONAL_TENSOR_TYPES:
        _require(item.get(key), expected, f"{where}.{key}", path)
    for key in ("shape", "transpose"):
        if not all(isinstance(d, int) and not isinstance(d, bool) for d in item.get(key) or []):
            raise BundleError(f"{path}: {where}.{key} must be a list of integers")
    transpose = item.get("transpose")
    if transpose is not None and sorted(transpose) != list(range(len(item["shape"]))):
        raise BundleError(
            f"{path}: {where}.transpose must order the {len(item['shape'])} axes of its shape"
        )
    if not all(isinstance(c, str) for c in item.get("classes") or []):
        raise BundleError(f"{path}: {where}.classes must be a list of strings")
    labels = item.get("labels")
    if labels is not None:
        _require(labels.get("file"), str, f"{where}.labels.file", path)
        _require(labels.get("axis"), int, f"{where}.labels.axis", path)
    quant = item["quantization"]
    if quant is not None:
        for key, wanted in (("scale", (int, float)), ("zero_point", int)):
            if key not in quant:
                raise BundleError(f"{path}: missing {where}.quantization.{key}")
            _require(quant[key], wanted, f"{where}.quantization.{key}", path)


def _require(value: Any, expected: type | tuple[type, ...], where: str, path: Path) -> None:
    names = expected if isinstance(expected, tuple) else (expected,)
    # JSON true/false is a Python bool, an int: not a number here
    if not isinstance(value, names) or (isinstance(value, bool) and bool not in names):
        wanted = " or ".join("null" if t is type(None) else _JSON_NAMES[t] for t in names)
        raise BundleError(f"{path}: {where} must be {wanted}")


_JSON_NAMES: dict[type, str] = {
    dict: "an object",
    list: "a list",
    str: "a string",
    int: "an integer",
    float: "a number",
}


def verify_bundle_files(bundle: Path, manifest: dict[str, Any]) -> Path:
    """The bundle's model file, after checking every file the manifest hashes.

    The model file must lie inside the bundle (a manifest naming ``../x`` or an absolute
    path is damaged), and the model file and every file under ``files`` (drift.json,
    labels.txt, ...) must have the sha256 the manifest records.
    """
    name = str(manifest["model"]["file"])
    model = _inside(bundle, name)
    if not model.exists():
        raise BundleError(f"{bundle}: model file {name} is missing")
    if file_sha256(model) != manifest["model"]["sha256"]:
        raise BundleError(f"{model}: sha256 differs from the manifest (the file was changed)")
    files = manifest.get("files") or {}
    if not isinstance(files, dict):
        raise BundleError(f"{bundle / MANIFEST}: 'files' must map file names to sha256")
    for listed, digest in sorted(files.items()):
        if str(listed) == name and digest == manifest["model"]["sha256"]:
            continue  # hashed just above (an .mlpackage folder is costly to hash twice)
        path = _inside(bundle, str(listed))
        if not path.exists():
            raise BundleError(f"{bundle}: {listed} (hashed in the manifest) is missing")
        if file_sha256(path) != digest:
            raise BundleError(f"{path}: sha256 differs from the manifest (the file was changed)")
    return model


def verify_model_io(
    manifest: dict[str, Any], declared: tuple[Sequence[Any], Sequence[Any]]
) -> None:
    """The manifest's inputs and outputs must be the model file's own (``declared``: the
    backend's :meth:`model_io`): every input the file takes, each output the manifest lists
    (a file may have more, a Core ML classifier's class label), with the same shapes, dtypes
    and quantization. An app wired from a manifest that describes another model feeds it
    wrong."""
    inputs, outputs = declared
    for kind, tensors in (("inputs", inputs), ("outputs", outputs)):
        recorded = {str(t.get("name")): t for t in manifest.get(kind) or []}
        in_file = {t.name: t for t in tensors}
        missing = [name for name in recorded if name not in in_file]
        if kind == "inputs":
            missing += [f"(unlisted) {name}" for name in in_file if name not in recorded]
        if missing:
            raise BundleError(
                f"manifest {kind} do not match the model file's ({', '.join(missing)}; the "
                f"file has {sorted(in_file)})"
            )
        for name, entry in recorded.items():
            _same_tensor(kind[:-1], entry, in_file[name])


def _same_tensor(kind: str, entry: dict[str, Any], tensor: Any) -> None:
    where = f"manifest {kind} {tensor.name!r}"
    if tensor.shape is not None and list(entry.get("shape", [])) != list(tensor.shape):
        raise BundleError(
            f"{where} has shape {entry.get('shape')}; the model file {list(tensor.shape)}"
        )
    if entry.get("dtype") != tensor.dtype:
        raise BundleError(f"{where} has dtype {entry.get('dtype')}; the model file {tensor.dtype}")
    recorded = entry.get("quantization")
    actual = tensor.quantization
    if (recorded is None) != (actual is None):
        said = "quantized" if recorded else "not quantized"
        raise BundleError(f"{where} says {said}; the model file disagrees")
    if recorded is not None and actual is not None:
        scale, zero_point = float(recorded["scale"]), int(recorded["zero_point"])
        if not math.isclose(scale, actual.scale, rel_tol=1e-6) or zero_point != actual.zero_point:
            raise BundleError(
                f"{where} has scale {scale:g}, zero point {zero_point}; the model file "
                f"{actual.scale:g}, {actual.zero_point}"
            )


def _inside(bundle: Path, name: str) -> Path:
    """``bundle / name``, refusing names that leave the bundle folder."""
    root = bundle.resolve()
    path = (bundle / name).resolve()
    if Path(name).is_absolute() or (path != root and root not in path.parents):
        raise BundleError(f"{bundle / MANIFEST}: {name!r} lies outside the bundle")
    return bundle / name
