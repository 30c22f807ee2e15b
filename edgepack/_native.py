"""Quiet, lazy access to the chatty native ML libraries.

TensorFlow 2.21 logs through absl before its own log level is read, so
``TF_CPP_MIN_LOG_LEVEL`` alone no longer silences it; its converter prints MLIR diagnostics
straight to file descriptor 2 and Keras' exporter prints to stdout. :func:`captured_output`
redirects both descriptors into a buffer while a native step runs. The text is not thrown
away: with ``-v`` it is replayed, and :func:`last_native_lines` lets an error message quote it.
"""

from __future__ import annotations

import contextlib
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


def import_coremltools() -> ModuleType:
    """Import coremltools once, without its start-up noise (on Linux it reports that its
    native runtime is missing, and warns about untested TensorFlow/scikit-learn versions)."""
    if "coremltools" in sys.modules:
        return sys.modules["coremltools"]
    import_tensorflow()  # coremltools imports TensorFlow when present: keep that quiet too
    with captured_output():
        import coremltools

        logging.getLogger("coremltools").setLevel(logging.ERROR)
    return coremltools
