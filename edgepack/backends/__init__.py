"""Backends, one module per target format, listed in one explicit registry."""

from __future__ import annotations

from edgepack.backends.base import (
    Backend,
    BuiltModel,
    CalibrationData,
    Emulator,
    QuantParams,
    TensorInfo,
)
from edgepack.backends.coreml import CoreMLBackend
from edgepack.backends.onnx import ONNXBackend
from edgepack.backends.tflite import TFLiteBackend
from edgepack.errors import ConfigError

BACKENDS: dict[str, Backend] = {
    "tflite": TFLiteBackend(),
    "onnx": ONNXBackend(),
    "coreml": CoreMLBackend(),
}

__all__ = [
    "BACKENDS",
    "Backend",
    "BuiltModel",
    "CalibrationData",
    "Emulator",
    "QuantParams",
    "TensorInfo",
    "get_backend",
]


def get_backend(name: str) -> Backend:
    """The backend registered under ``name``, or a one-line error."""
    try:
        return BACKENDS[name]
    except KeyError:
        known = ", ".join(sorted(BACKENDS))
        raise ConfigError(f"no backend {name!r} (available: {known})") from None
