"""edgepack: turn a trained model into ready-to-ship, drift-checked bundles for edge devices.

The public API is :func:`build`, :func:`check`, :func:`inspect` and :func:`targets`
(see :mod:`edgepack.api`), typed (the package ships ``py.typed``). Importing it stays fast:
TensorFlow, coremltools and onnxruntime are imported by the functions that need them.
"""

from __future__ import annotations

__version__ = "0.1.0.dev0"

# after __version__: edgepack.api reads it
from edgepack.api import (
    BuildResult,
    CheckResult,
    TargetInfo,
    build,
    check,
    inspect,
    targets,
)

__all__ = [
    "BuildResult",
    "CheckResult",
    "TargetInfo",
    "__version__",
    "build",
    "check",
    "inspect",
    "targets",
]
