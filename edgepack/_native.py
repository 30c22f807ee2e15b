"""Quiet, lazy access to the chatty native ML libraries.

TensorFlow 2.21 logs through absl before its own log level is read, so
``TF_CPP_MIN_LOG_LEVEL`` alone no longer silences it; its converter prints MLIR diagnostics
straight to file descriptor 2 and Keras' exporter prints to stdout. :func:`captured_output`
redirects both descriptors into a buffer while a native step runs. The text is not thrown
away: with ``-v`` it is replayed, and :func:`last_native_lines` lets an error message quote it.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import io
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from types import ModuleType
from typing import Any

_STATE: dict[str, Any] = {"verbose": 0, "last": ""}


def set_verbosity(level: int) -> None:
    """0: quiet; 1: replay native logs of each step; 2: also leave warnings on."""
    _STATE["verbose"] = level
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if level >= 2 else "3")


def verbosity() -> int:
    return int(_STATE["verbose"])


def last_native_lines(count: int = 3) -> str:
    """The last non-empty lines a native step printed (for error messages)."""
    lines = [line.strip() for line in str(_STATE["last"]).splitlines() if line.strip()]
    return " | ".join(lines[-count:])


@contextlib.contextmanager
def captured_output() -> Iterator[None]:
    """Send file descriptors 1 and 2, and Python's sys.stdout/sys.stderr, to a buffer while
    the block runs."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved: list[tuple[int, int]] = []
    python_level = io.StringIO()  # print() to a replaced sys.stdout (tests, notebooks) skips fds
    with tempfile.TemporaryFile(mode="w+b") as sink:
        try:
            for fd in (1, 2):
                try:
                    saved.append((fd, os.dup(fd)))
                    os.dup2(sink.fileno(), fd)
                except OSError:
                    continue
            with (
                warnings.catch_warnings(),
                contextlib.redirect_stdout(python_level),
                contextlib.redirect_stderr(python_level),
            ):
                if verbosity() < 2:
                    warnings.simplefilter("ignore")
                yield
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            text = sink.read().decode("utf-8", errors="replace") + python_level.getvalue()
            _STATE["last"] = text
            if verbosity() >= 1 and text.strip():
                sys.stderr.write(text)


def import_tensorflow() -> ModuleType:
    """Import TensorFlow once, without its start-up noise."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with captured_output():
        import tensorflow as tf

        tf.get_logger().setLevel(logging.ERROR)
        with contextlib.suppress(Exception):
            from absl import logging as absl_logging

            absl_logging.set_verbosity(absl_logging.ERROR)
    return tf


# coremltools imports every framework it has a converter for when it is imported: 5-6 s of
# TensorFlow and PyTorch start-up. A process that only reads and runs ML programs (the CLI's
# check and inspect) needs none of them.
_CONVERTER_FRAMEWORKS = ("tensorflow", "torch", "sklearn", "xgboost", "libsvm")


def use_coremltools_without_converters() -> None:
    """Make this process import coremltools without its converter frameworks (it then cannot
    convert models; the Core ML emulator needs no converter). For commands that never convert:
    the CLI's ``check`` and ``inspect``. No effect once coremltools is imported."""
    _STATE["coremltools_lean"] = True


def allow_coremltools_converters() -> None:
    """Undo :func:`use_coremltools_without_converters` (before coremltools is imported)."""
    _STATE["coremltools_lean"] = False


class _BlockedImports(importlib.abc.MetaPathFinder):
    """Makes ``import name`` fail for the given top-level packages."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> None:
        if fullname.split(".", maxsplit=1)[0] in self.names:
            raise ModuleNotFoundError(f"{fullname} is not imported here", name=fullname)


def import_coremltools() -> ModuleType:
    """Import coremltools once, without its start-up noise (on Linux it reports that its
    native runtime is missing, and warns about untested TensorFlow/scikit-learn versions)."""
    if "coremltools" in sys.modules:
        return sys.modules["coremltools"]
    blocker = None
    if _STATE.get("coremltools_lean"):
        absent = tuple(name for name in _CONVERTER_FRAMEWORKS if name not in sys.modules)
        blocker = _BlockedImports(absent)
        sys.meta_path.insert(0, blocker)
    else:
        import_tensorflow()  # coremltools imports TensorFlow when present: keep that quiet too
    try:
        with captured_output():
            import coremltools

            logging.getLogger("coremltools").setLevel(logging.ERROR)
    finally:
        if blocker is not None:
            sys.meta_path.remove(blocker)
    return coremltools
