"""The drift report: metrics per output, the budget, and the verdict."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edgepack.drift import metrics
from edgepack.drift.channels import (
    ChannelDrift,
    channel_drift,
    collapsed_channels,
    parse_slice,
)
from edgepack.drift.detections import (
    DetectionDrift,
    detection_drift,
    rank_of,
    recognise_layout,
)
from edgepack.errors import ConfigError
from edgepack.options import Thresholds

REPORT_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class OutputDrift:
    """Float-vs-quantized metrics for one model output."""

    name: str
    sqnr_db: float
    cosine: float
    max_abs_error: float
    top1_agreement: float | None
    channels: list[ChannelDrift] | None = None  # per channel or declared slice, when measured
    detections: DetectionDrift | None = None  # when the output is a detector's

    @property
    def collapsed(self) -> list[ChannelDrift]:
        return collapsed_channels(self.channels)


@dataclass(frozen=True)
class DriftReport:
    """Everything one drift check measured, and whether the budget holds."""

    samples: int
    outputs: list[OutputDrift]
    primary_output: str
    top1_agreement: float | None
    accuracy_float: float | None
    accuracy_quantized: float | None
    thresholds: Thresholds
    failures: list[str]
    runtime: str = ""
    runtime_kind: str = "host"
    data: dict[str, Any] = field(default_factory=dict)
    # samples right in both, float only, quantized only, neither (with labels)
    paired: tuple[int, int, int, int] | None = None
    # the execution path whose figures these are, every path measured (edgepack.drift.paths:
    # PathDrift) and the spread between them (OutputSpread); empty for a single path
    path: str = ""
    paths: list[Any] = field(default_factory=list)
    spread: list[Any] = field(default_factory=list)

    def resolution(self) -> list[str]:
        """What this sample can and cannot tell about the budget (see :func:`resolution_notes`)."""
        return resolution_notes(self)

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def accuracy_drop(self) -> float | None:
        if self.accuracy_float is None or self.accuracy_quantized is None:
            return None
        return self.accuracy_float - self.accuracy_quantized

    @property
    def min_sqnr_db(self) -> float:
        return min(o.sqnr_db for o in self.outputs)

    def counts(self) -> dict[str, int | None]:
        """Whole-sample counts behind the fractions: agreeing samples, samples right in float
        and quantized, and the net number of samples the quantized model lost."""
        n = self.samples

        def count(fraction: float | None) -> int | None:
            return None if fraction is None else round(fraction * n)

        right_float, right_quant = count(self.accuracy_float), count(self.accuracy_quantized)
        dropped = None
        if self.paired is not None:  # exact counts, not fractions rounded back
            both, float_only, quant_only, _ = self.paired
            right_float, right_quant = both + float_only, both + quant_only
            dropped = float_only - quant_only
        elif right_float is not None and right_quant is not None:
            dropped = right_float - right_quant
        return {
            "agree": count(self.top1_agreement),
            "correct_float": right_float,
            "correct_quantized": right_quant,
            "dropped": dropped,
        }

    def intervals(self) -> dict[str, list[float] | None]:
        """95% Wilson intervals of agreement and both accuracies; the drop's interval uses the
        paired outcomes when they were recorded (Newcombe's method 10), else None."""
        n, counts = self.samples, self.counts()

        def wilson(key: str) -> list[float] | None:
            value = counts[key]
            return None if value is None else list(metrics.wilson_interval(value, n))

        drop = None
        if self.paired is not None:
            drop = list(metrics.paired_difference_interval(*self.paired))
        return {
            "top1_agreement": wilson("agree"),
            "accuracy_float": wilson("correct_float"),
            "accuracy_quantized": wilson("correct_quantized"),
            "accuracy_drop": drop,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": REPORT_SCHEMA_VERSION,
            "verdict": "pass" if self.passed else "fail",
            "failures": list(self.failures),
            "samples": self.samples,
            "runtime": self.runtime,
            "runtime_kind": self.runtime_kind,
            "data": dict(self.data),
            "primary_output": self.primary_output,
            "top1_agreement": self.top1_agreement,
            "accuracy_float": self.accuracy_float,
            "accuracy_quantized": self.accuracy_quantized,
            "accuracy_drop": self.accuracy_drop,
            "min_sqnr_db": self.min_sqnr_db,
            "thresholds": asdict(self.thresholds),
            "outputs": [asdict(o) for o in self.outputs],
            "counts": self.counts(),
            "intervals": self.intervals(),
            "resolution": self.resolution(),
            "path": self.path,
            "paths": [asdict(p) for p in self.paths],
            "spread": [asdict(s) for s in self.spread],
        }

    def summary(self) -> dict[str, Any]:
        """The short form recorded in a bundle manifest."""
        full = self.to_dict()
        keys = (
            "verdict",
            "failures",
            "samples",
            "runtime",
            "runtime_kind",
            "top1_agreement",
            "accuracy_float",
            "accuracy_quantized",
            "accuracy_drop",
            "min_sqnr_db",
            "thresholds",
            "path",
            "data",
        )
        summary = {key: full[key] for key in keys}
        summary["paths"] = [
            {k: p[k] for k in ("name", "runtime", "verdict", "top1_agreement", "min_sqnr_db")}
            for p in full["paths"]
        ]
        return summary


def compare_outputs(
    reference: Mapping[str, np.ndarray],
    quantized: Mapping[str, np.ndarray],
    labels: np.ndarray | None,
    thresholds: Thresholds,
    runtime: str = "",
    data: Mapping[str, Any] | None = None,
    runtime_kind: str = "host",
    slices: Mapping[str, Mapping[str, str]] | None = None,
    detections: Mapping[str, str] | None = None,
) -> DriftReport:
    """Measure drift per output, then judge it against ``thresholds``.

    The first output with a (batch, classes) shape is the primary one: top-1 agreement and
    accuracy are measured on it. SQNR is checked on every output, and per channel (or per
    declared slice of ``slices``) where :mod:`edgepack.drift.channels` says so. Outputs that
    are YOLO-style detections (declared in ``detections`` as ``{output: layout}``, or
    recognised by :func:`~edgepack.drift.detections.recognise_layout`; ``"off"`` stops that)
    are also measured as detections: recall of the float model's detections and box IoU.
    """
    names = list(reference)
    declared = dict(slices or {})
    _check_slices(declared, reference)
    layouts = dict(detections or {})
    _check_detections(layouts, reference)
    per_output = [
        _output_drift(
            name,
            reference[name],
            quantized[name],
            declared.get(name),
            layouts.get(name),
            thresholds.detection_score,
        )
        for name in names
    ]
    primary = next((o for o in per_output if o.top1_agreement is not None), per_output[0])
    acc_float = acc_quant = paired = None
    if labels is not None and primary.top1_agreement is not None:
        acc_float = metrics.accuracy(reference[primary.name], labels)
        acc_quant = metrics.accuracy(quantized[primary.name], labels)
        paired = _paired(reference[primary.name], quantized[primary.name], labels)
    report = DriftReport(
        samples=len(next(iter(reference.values()))),
        outputs=per_output,
        primary_output=primary.name,
        top1_agreement=primary.top1_agreement,
        accuracy_float=acc_float,
        accuracy_quantized=acc_quant,
        thresholds=thresholds,
        failures=[],
        runtime=runtime,
        runtime_kind=runtime_kind,
        data=dict(data or {}),
        paired=paired,
    )
    report.failures.extend(judge(report))
    return report


def judge(report: DriftReport) -> list[str]:
    """One line per threshold that does not hold.

    Agreement and accuracy drop are counted in whole samples: with n samples, an agreement
    budget of ``a`` needs ceil(a * n) agreeing samples and a drop budget of ``d`` allows
    floor(d * n) samples. SQNR is compared as printed (two decimals, or the threshold's own
    digits when it has more), so a figure never fails against a bound it appears to meet.
    Detection recall counts whole detections the same way.
    """
    return [
        *_sample_failures(report),
        *_sqnr_failures(report),
        *_recall_failures(report),
        *_collapse_failures(report),
    ]


def _sample_failures(report: DriftReport) -> list[str]:
    limits, n, counts = report.thresholds, report.samples, report.counts()
    agree, dropped = counts["agree"], counts["dropped"]
    failures = []
    if limits.min_agreement is not None and agree is not None:
        needed = math.ceil(metrics.whole_samples(limits.min_agreement, n))
        if agree < needed:
            failures.append(
                f"top-1 agreement {_share(agree, n)} < {_pct(limits.min_agreement)} "
                f"(needs {needed} of {n})"
            )
    if limits.max_drop is not None and dropped is not None:
        allowed = math.floor(metrics.whole_samples(limits.max_drop, n))
        if dropped > allowed:
            failures.append(
                f"accuracy drop {_share(dropped, n)} > {_pct(limits.max_drop)} "
                f"(at most {allowed} of {n})"
            )
    return failures


def _sqnr_failures(report: DriftReport) -> list[str]:
    bound = report.thresholds.min_sqnr
    if bound is None:
        return []
    digits = sqnr_digits(bound)
    return [
        f"SQNR of {o.name!r} {o.sqnr_db:.{digits}f} dB < {bound:.{digits}f} dB"
        for o in report.outputs
        if round(o.sqnr_db, digits) < bound
    ]


def _recall_failures(report: DriftReport) -> list[str]:
    """Detections count like samples: a recall budget of r over m float detections needs
    ceil(r * m) of them found again."""
    bound = report.thresholds.min_recall
    failures = []
    for output in report.outputs:
        found = output.detections
        if bound is None or found is None or found.recall is None:
            continue
        needed = math.ceil(metrics.whole_samples(bound, found.float_detections))
        if found.matched < needed:
            failures.append(
                f"detection recall of {output.name!r} "
                f"{_share(found.matched, found.float_detections)} < {_pct(bound)} (needs "
                f"{needed} of the float model's {found.float_detections} detections with "
                f"score >= {found.score_threshold:g})"
            )
    return failures


def _collapse_failures(report: DriftReport) -> list[str]:
    if report.thresholds.allow_collapse:
        return []
    return [
        f"output {output.name!r} {channel.name} collapsed: {channel.reason}"
        for output in report.outputs
        for channel in output.collapsed
    ]


def resolution_notes(report: DriftReport) -> list[str]:
    """One sentence per budget this sample cannot resolve: a budget finer than one sample
    (any single lost sample decides it), or a 95% interval that contains the budget (the
    verdict could go either way on another sample of the same size), each with the number of
    samples that would resolve it (:func:`~edgepack.drift.metrics.samples_needed`)."""
    limits, n = report.thresholds, report.samples
    intervals = report.intervals()
    notes = []
    budgets = (
        ("agreement", limits.min_agreement, intervals["top1_agreement"], report.top1_agreement),
        ("accuracy drop", limits.max_drop, intervals["accuracy_drop"], report.accuracy_drop),
    )
    for name, bound, interval, value in budgets:
        if bound is None or value is None:
            continue
        allowance = (1 - bound) if name == "agreement" else bound
        needed = metrics.samples_needed(allowance)
        if allowance > 0 and whole_sample_share(n) > allowance:
            notes.append(
                f"the {name} budget ({_pct(bound)}) is finer than one sample of {n} "
                f"({_pct(whole_sample_share(n))}); about {needed} samples would resolve it"
            )
        elif interval is not None and interval[0] <= bound <= interval[1] and n < needed:
            notes.append(
                f"the 95% interval of the {name} [{interval[0]:.2%}, {interval[1]:.2%}] "
                f"contains the budget {_pct(bound)}: {n} samples cannot tell which side the "
                f"bundle is on; about {needed} would"
            )
    return notes


def whole_sample_share(total: int) -> float:
    """The share one sample is of ``total``."""
    return 1.0 / total if total else 1.0


def sqnr_digits(threshold: float | None) -> int:
    """Decimals an SQNR is shown and compared with: two, or the threshold's own if more."""
    if threshold is None:
        return 2
    text = repr(float(threshold))
    decimals = len(text.split(".")[1]) if "." in text and "e" not in text else 2
    return max(2, min(decimals, 6))


def _pct(value: float) -> str:
    text = f"{value:.2%}"
    return text if float(text[:-1]) / 100 == round(value, 6) else f"{value:.4%}"


def _share(count: int, total: int) -> str:
    return f"{count / total:.2%} ({count} of {total})"


def _check_slices(
    declared: Mapping[str, Mapping[str, str]], reference: Mapping[str, np.ndarray]
) -> None:
    for output, table in declared.items():
        if output not in reference:
            raise ConfigError(
                f"drift.slices names output {output!r}; the model's outputs are {list(reference)}"
            )
        width = np.shape(reference[output])[-1]
        for name, text in table.items():
            try:
                parse_slice(text, width)
            except ValueError as exc:
                raise ConfigError(
                    f"drift.slices.{output}.{name}: {exc} (the last axis has {width})"
                ) from None


def _check_detections(layouts: Mapping[str, str], reference: Mapping[str, np.ndarray]) -> None:
    for output, layout in layouts.items():
        if output not in reference:
            raise ConfigError(
                f"drift.detections names output {output!r}; the model's outputs are "
                f"{list(reference)}"
            )
        if layout != "off" and np.ndim(reference[output]) != rank_of(layout):
            raise ConfigError(
                f"drift.detections.{output}: a {layout} detection output has rank "
                f"{rank_of(layout)}, this one has shape {list(np.shape(reference[output]))}"
            )


def _output_drift(
    name: str,
    reference: np.ndarray,
    quantized: np.ndarray,
    slices: Mapping[str, str] | None = None,
    layout: str | None = None,
    score_threshold: float = 0.25,
) -> OutputDrift:
    ref = np.asarray(reference, dtype=np.float32)
    out = np.asarray(quantized, dtype=np.float32)
    if ref.shape != out.shape:
        raise ValueError(f"output {name!r}: float shape {ref.shape} != quantized {out.shape}")
    agreement = (
        metrics.top1_agreement(ref, out) if metrics.is_classifier_output(ref.shape) else None
    )
    return OutputDrift(
        name=name,
        sqnr_db=metrics.sqnr_db(ref, out),
        cosine=metrics.cosine_similarity(ref, out),
        max_abs_error=metrics.max_abs_error(ref, out),
        top1_agreement=agreement,
        channels=channel_drift(ref, out, slices),
        detections=_detections(name, ref, out, layout, score_threshold),
    )


def _detections(
    name: str, ref: np.ndarray, out: np.ndarray, layout: str | None, score_threshold: float
) -> DetectionDrift | None:
    if layout == "off":
        return None
    chosen = layout or recognise_layout(ref)
    if chosen is None:
        return None
    return detection_drift(name, ref, out, chosen, score_threshold=score_threshold)


def _paired(
    reference: np.ndarray, quantized: np.ndarray, labels: np.ndarray
) -> tuple[int, int, int, int]:
    right_float = metrics.top1(reference) == np.asarray(labels)
    right_quant = metrics.top1(quantized) == np.asarray(labels)
    return (
        int(np.sum(right_float & right_quant)),
        int(np.sum(right_float & ~right_quant)),
        int(np.sum(~right_float & right_quant)),
        int(np.sum(~right_float & ~right_quant)),
    )
