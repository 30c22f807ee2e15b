"""Every error edgepack reports to a user, each with its own process exit code.

The CLI prints ``str(error)`` on one line and exits with ``error.exit_code``; anything
that is not an :class:`EdgepackError` is a bug and exits with :data:`EXIT_INTERNAL`.

Exit codes are part of the public interface (CI pipelines branch on them):

====  ==========================================================
0     success; for ``check``: every drift threshold holds
1     drift budget exceeded (``check``, and ``build`` after writing the bundle)
2     usage or configuration error (bad flag, unknown config key, bad profile)
3     bad input: missing or unreadable model, bad calibration or evaluation data
4     the model cannot be converted or quantized for the target
5     the output exists (bundle present without ``--force``)
6     a bundle is damaged or does not match its source model
7     an output cannot be written (read-only file system, disk full, no permission)
70    internal error (a bug: please report it with ``-v`` output)
130   interrupted (Ctrl-C); nothing is left half-written
====  ==========================================================
"""

from __future__ import annotations

import errno
from typing import Any

EXIT_OK = 0
EXIT_DRIFT = 1
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_CONVERSION = 4
EXIT_EXISTS = 5
EXIT_BUNDLE = 6
EXIT_OUTPUT = 7
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


class EdgepackError(Exception):
    """Base class: a problem the user can fix, reported as one line."""

    exit_code = EXIT_INTERNAL
    kind = "error"

    def __str__(self) -> str:
        # One line, always: native libraries like to put newlines in their messages.
        return " ".join(super().__str__().split())


class ConfigError(EdgepackError):
    """A flag, option, config file, environment variable or target profile is wrong."""

    exit_code = EXIT_USAGE
    kind = "config error"


class InputError(EdgepackError):
    """A model file, calibration set or evaluation set cannot be used."""

    exit_code = EXIT_INPUT
    kind = "input error"


class ModelLoadError(InputError):
    """The source model is missing, of an unknown format, or cannot be loaded."""

    kind = "model error"


class CalibrationError(InputError):
    """A calibration or evaluation set is empty, unreadable or does not fit the model."""

    kind = "calibration error"


class ConversionError(EdgepackError):
    """The converter or quantizer failed, or the result breaks the profile's rules."""

    exit_code = EXIT_CONVERSION
    kind = "conversion error"


class UnloadableModelError(ConversionError):
    """A quantizer wrote a model its own runtime cannot load; ``node`` is the node the
    runtime's error names, when it names one (a backend may quantize again without it)."""

    def __init__(self, message: str, node: str | None = None) -> None:
        super().__init__(message)
        self.node = node


class UnsupportedError(ConversionError):
    """The backend does not support this model (an op, a dtype, a source format)."""

    kind = "unsupported"


class BundleExistsError(EdgepackError):
    """The bundle directory exists and ``--force`` was not given."""

    exit_code = EXIT_EXISTS
    kind = "bundle exists"


class BundleError(EdgepackError):
    """A bundle is missing files, its manifest is invalid, or its source model changed."""

    exit_code = EXIT_BUNDLE
    kind = "bundle error"


class OutputError(EdgepackError):
    """A bundle or report cannot be written: read-only file system, disk full, permission."""

    exit_code = EXIT_OUTPUT
    kind = "output error"


# The operating-system errors that mean "this place cannot take the output", not a bug;
# permission errors only where edgepack knows it was writing.
FULL_OR_READ_ONLY = frozenset({errno.EROFS, errno.ENOSPC, errno.EDQUOT})
NOT_PERMITTED = frozenset({errno.EACCES, errno.EPERM})


def output_error(exc: OSError, what: str, writing: bool = False) -> OutputError | None:
    """The :class:`OutputError` an ``OSError`` means (``writing``: it was raised while
    writing ``what``, so a permission error counts too), or None for another failure."""
    if exc.errno not in FULL_OR_READ_ONLY | (NOT_PERMITTED if writing else frozenset()):
        return None
    where = f" ({exc.filename})" if exc.filename else ""
    return OutputError(f"cannot write {what}: {exc.strerror or exc}{where}")


class TargetsFailedError(EdgepackError):
    """Some targets of a build with several failed; the others were built.

    ``failures`` pairs each failed target with its error; ``results`` holds the others'
    :class:`edgepack.api.BuildResult`. The exit code is the worst (highest) of the failures'.
    """

    kind = "build failed"

    def __init__(self, failures: list[tuple[str, EdgepackError]], results: list[Any]) -> None:
        self.failures = failures
        self.results = results
        self.exit_code = max(error.exit_code for _, error in failures)
        built = f"; built: {', '.join(r.target for r in results)}" if results else ""
        super().__init__(
            f"{len(failures)} of {len(failures) + len(results)} targets failed: "
            + "; ".join(f"{target}: {error.kind}: {error}" for target, error in failures)
            + built
        )


class DriftExceededError(EdgepackError):
    """At least one drift threshold does not hold."""

    exit_code = EXIT_DRIFT
    kind = "drift exceeded"
