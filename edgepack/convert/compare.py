"""Float-vs-float comparison of a converted model with its original."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from edgepack.errors import ConversionError


def relative_error(reference: np.ndarray, converted: np.ndarray) -> float:
    """max |ref - conv| / max |ref|: scale-free, so one tolerance fits logits and probabilities."""
    ref = np.asarray(reference, dtype=np.float64)
    diff = np.abs(ref - np.asarray(converted, dtype=np.float64))
    return float(diff.max() / max(float(np.abs(ref).max()), 1e-12)) if diff.size else 0.0


def check_float_match(
    reference: Mapping[str, np.ndarray],
    converted: Mapping[str, np.ndarray],
    tolerance: float,
    what: str,
) -> dict[str, float]:
    """Raise naming the worst output when a converted float model drifts from its original."""
    errors = {}
    for name, ref in reference.items():
        out = np.asarray(converted[name])
        if out.shape != np.asarray(ref).shape:
            raise ConversionError(
                f"{what}: output {name!r} has shape {out.shape}, the original {np.shape(ref)}"
            )
        errors[name] = relative_error(ref, out)
    worst = max(errors, key=errors.__getitem__)
    if errors[worst] > tolerance:
        raise ConversionError(
            f"{what}: converted float model disagrees with the original; worst output "
            f"{worst!r} has relative error {errors[worst]:.2e} > {tolerance:.0e}"
        )
    return errors
