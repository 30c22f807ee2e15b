"""Accuracy drift: metrics (pure NumPy) and the drift report with its verdict."""

from edgepack.drift.metrics import (
    accuracy,
    cosine_similarity,
    max_abs_error,
    sqnr_db,
    top1_agreement,
)
from edgepack.drift.report import DriftReport, OutputDrift, compare_outputs

__all__ = [
    "DriftReport",
    "OutputDrift",
    "accuracy",
    "compare_outputs",
    "cosine_similarity",
    "max_abs_error",
    "sqnr_db",
    "top1_agreement",
]
