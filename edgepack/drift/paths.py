"""Drift on every execution path of a target, judged on the worst one.

A bundle's int8 arithmetic is not one thing: LiteRT's built-in kernels, XNNPACK and the
reference kernels round and accumulate differently, and onnxruntime's fused kernels depend on
the CPU's instruction set. An app ships on all of them, so each host path is measured against
the float model, the verdict fails when any path fails (each failure names its path), the
report's headline figures are the worst path's, and the *spread* says how far the paths are
apart from each other: the largest output difference between any two paths (in LSB of the
output's quantization step where the output leaves the model quantized) and the number of
samples whose top-1 answer is not the same on every path.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgepack.drift import metrics
from edgepack.drift.report import DriftReport, compare_outputs
from edgepack.options import Thresholds


@dataclass(frozen=True)
class PathOutputs:
    """What one execution path produced on the drift samples."""

    name: str
    runtime: str
    outputs: Mapping[str, np.ndarray]
    kind: str = "host"
    description: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PathDrift:
    """One path's figures, as the report lists them."""

    name: str
    runtime: str
    description: str
    verdict: str
    failures: list[str]
    top1_agreement: float | None
    accuracy_quantized: float | None
    accuracy_drop: float | None
    min_sqnr_db: float
    sqnr_db: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OutputSpread:
    """How far the paths are apart on one output: the largest absolute difference between two
    paths' values (``max_lsb``: in quantization steps, when the output is quantized), between
    which two paths, and on how many samples the top-1 answer differs between some paths."""

    output: str
    max_abs_diff: float
    max_lsb: float | None
    between: tuple[str, str]
    top1_differs: int | None


def compare_paths(
    reference: Mapping[str, np.ndarray],
    paths: Sequence[PathOutputs],
    labels: np.ndarray | None,
    thresholds: Thresholds,
    data: Mapping[str, Any] | None = None,
    slices: Mapping[str, Mapping[str, str]] | None = None,
    steps: Mapping[str, float] | None = None,
    detections: Mapping[str, str] | None = None,
) -> DriftReport:
    """One drift report for several execution paths of the same bundle.

    Every path is compared with the float model (:func:`compare_outputs`); the returned report
    carries the worst path's figures (the one failing the most thresholds, then the lowest
    agreement, then the lowest SQNR), every path's failures prefixed by its name when there is
    more than one path, each path's figures in ``paths`` and the spread between them.
    ``steps`` gives the quantization step of quantized outputs, by output name; ``slices`` and
    ``detections`` are as for :func:`compare_outputs`.
    """
    if not paths:
        raise ValueError("compare_paths needs at least one execution path")
    reports = [
        compare_outputs(
            reference,
            path.outputs,
            labels,
            thresholds,
            runtime=path.runtime,
            runtime_kind=path.kind,
            data=data,
            slices=slices,
            detections=detections,
        )
        for path in paths
    ]
    worst = max(range(len(paths)), key=lambda i: _severity(reports[i]))
    several = len(paths) > 1
    failures = [
        f"[{path.name}] {line}" if several else line
        for path, report in zip(paths, reports, strict=True)
        for line in report.failures
    ]
    return dataclasses.replace(
        reports[worst],
        failures=failures,
        path=paths[worst].name,
        paths=[_path_drift(p, r) for p, r in zip(paths, reports, strict=True)],
        spread=path_spread(paths, steps or {}) if several else [],
    )


def path_spread(paths: Sequence[PathOutputs], steps: Mapping[str, float]) -> list[OutputSpread]:
    """Per output, the largest difference between any two paths (see :class:`OutputSpread`)."""
    spreads = []
    for name in paths[0].outputs:
        values = [np.asarray(p.outputs[name], np.float64) for p in paths]
        largest, between = 0.0, (paths[0].name, paths[1].name)
        for (i, a), (j, b) in itertools.combinations(enumerate(values), 2):
            gap = float(np.max(np.abs(a - b))) if a.size else 0.0
            if gap > largest:
                largest, between = gap, (paths[i].name, paths[j].name)
        step = steps.get(name)
        top1_differs = None
        if metrics.is_classifier_output(values[0].shape):
            answers = np.stack([metrics.top1(v) for v in values])
            top1_differs = int(np.sum(np.any(answers != answers[0], axis=0)))
        spreads.append(
            OutputSpread(
                output=name,
                max_abs_diff=largest,
                max_lsb=None if not step else round(largest / step, 3),
                between=between,
                top1_differs=top1_differs,
            )
        )
    return spreads


def _severity(report: DriftReport) -> tuple[float, float, float]:
    agreement = 1.0 if report.top1_agreement is None else report.top1_agreement
    return (len(report.failures), -agreement, -report.min_sqnr_db)


def _path_drift(path: PathOutputs, report: DriftReport) -> PathDrift:
    return PathDrift(
        name=path.name,
        runtime=path.runtime,
        description=path.description,
        verdict="pass" if report.passed else "fail",
        failures=list(report.failures),
        top1_agreement=report.top1_agreement,
        accuracy_quantized=report.accuracy_quantized,
        accuracy_drop=report.accuracy_drop,
        min_sqnr_db=report.min_sqnr_db,
        sqnr_db={o.name: o.sqnr_db for o in report.outputs},
        details=dict(path.details),
    )
