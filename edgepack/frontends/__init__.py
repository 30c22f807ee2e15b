"""Frontends: load a model file into a :class:`SourceModel`.

``FRONTENDS`` maps a source format to its loader; :func:`detect_format` picks one from the
path (``.keras``/``.h5`` -> Keras, a folder with ``saved_model.pb`` -> SavedModel,
``.onnx`` -> ONNX).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edgepack.errors import ModelLoadError
from edgepack.frontends.base import SourceModel, TensorSpec, sha256_of_path
from edgepack.frontends.keras_model import load_keras
from edgepack.frontends.onnx_model import load_onnx
from edgepack.frontends.savedmodel import load_savedmodel

FRONTENDS: dict[str, Callable[[Path], SourceModel]] = {
    "keras": load_keras,
    "savedmodel": load_savedmodel,
    "onnx": load_onnx,
}

__all__ = [
    "FRONTENDS",
    "SourceModel",
    "TensorSpec",
    "detect_format",
    "load_source",
    "sha256_of_path",
]


# Formats edgepack writes but does not read: a bundle's model is made from the float original.
DEPLOYMENT_FORMATS = {
    ".mlpackage": "a Core ML package",
    ".mlmodel": "a Core ML model",
    ".mlmodelc": "a compiled Core ML model",
    ".tflite": "a TFLite model",
}


def detect_format(path: Path) -> str:
    """The source format of ``path``, or a one-line error saying what was expected."""
    if not path.exists():
        raise ModelLoadError(f"{path}: no such model file or folder")
    deployed = DEPLOYMENT_FORMATS.get(path.suffix.lower())
    if deployed:
        raise ModelLoadError(
            f"{path}: {deployed} is a deployment format edgepack writes, not a source it "
            "reads; build from the float original (.keras, .h5, .onnx or a SavedModel folder)"
        )
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return "savedmodel"
        raise ModelLoadError(f"{path}: a folder, but not a SavedModel (no saved_model.pb in it)")
    suffix = path.suffix.lower()
    if suffix in {".keras", ".h5", ".hdf5"}:
        return "keras"
    if suffix == ".onnx":
        return "onnx"
    raise ModelLoadError(
        f"{path}: unknown model format {suffix or '(no extension)'!r}; "
        "expected .keras, .h5, .onnx or a SavedModel folder"
    )


def load_source(path: str | Path) -> SourceModel:
    """Load any supported model file into a :class:`SourceModel`."""
    model_path = Path(path)
    return FRONTENDS[detect_format(model_path)](model_path)
