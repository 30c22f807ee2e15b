"""edgepack: turn a trained model into ready-to-ship, drift-checked bundles for edge devices.

The public API is :func:`build`, :func:`check`, :func:`inspect` and :func:`targets`
(see :mod:`edgepack.api`); they are loaded on first use so that importing edgepack stays fast.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0.dev0"
__all__ = ["__version__", "build", "check", "inspect", "targets"]


def __getattr__(name: str) -> Any:
    if name in {"build", "check", "inspect", "targets"}:
        from edgepack import api

        return getattr(api, name)
    raise AttributeError(f"module 'edgepack' has no attribute {name!r}")
