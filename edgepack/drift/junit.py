"""The drift verdict as JUnit XML, so CI systems show each threshold like a test.

One test suite per report; one test case per threshold that applies (top-1 agreement, accuracy
drop, the SQNR of each output) and one per output for channel collapse. A threshold that is off,
or that cannot be measured (no labels, no classifier output), is a skipped test case; a broken
one is a failure whose message is the report's own failure line.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgepack.drift.report import DriftReport


@dataclass(frozen=True)
class Case:
    name: str
    failure: str | None = None
    skipped: str | None = None


def junit_cases(report: DriftReport) -> list[Case]:
    """The test cases of ``report``, in a stable order."""
    limits = report.thresholds
    cases = [
        _case(
            "top-1 agreement",
            limits.min_agreement,
            report.top1_agreement,
            lambda value, limit: value >= limit,
            lambda value, limit: f"top-1 agreement {value:.2%} < {limit:.2%}",
            "no classifier output",
        ),
        _case(
            "accuracy drop",
            limits.max_drop,
            report.accuracy_drop,
            lambda value, limit: value <= limit,
            lambda value, limit: f"accuracy drop {value:.2%} > {limit:.2%}",
            "no labels",
        ),
    ]
    for output in report.outputs:
        cases.append(
            _case(
                f"SQNR of {output.name}",
                limits.min_sqnr,
                output.sqnr_db,
                lambda value, limit: value >= limit,
                lambda value, limit, name=output.name: (
                    f"SQNR of {name!r} {value:.1f} dB < {limit:.1f} dB"
                ),
                "",
            )
        )
    for output in report.outputs:
        collapsed = output.collapsed
        name = f"no collapsed channel in {output.name}"
        if output.channels is None:
            cases.append(Case(name, skipped="channels not measured apart (similar ranges)"))
        elif collapsed and not limits.allow_collapse:
            details = "; ".join(f"{c.name}: {c.reason}" for c in collapsed)
            cases.append(Case(name, failure=f"{len(collapsed)} collapsed: {details}"))
        else:
            cases.append(Case(name))
    return cases


def _case(
    name: str,
    limit: float | None,
    value: float | None,
    holds: Any,
    message: Any,
    unmeasured: str,
) -> Case:
    if limit is None:
        return Case(name, skipped="threshold off")
    if value is None:
        return Case(name, skipped=f"not measured: {unmeasured}")
    return Case(name) if holds(value, limit) else Case(name, failure=message(value, limit))


def junit_xml(report: DriftReport, bundle: str) -> str:
    """The JUnit XML document of ``report`` for ``bundle``."""
    cases = junit_cases(report)
    suite_name = f"edgepack drift {Path(bundle).name}"
    suites = ET.Element("testsuites", name="edgepack check")
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=suite_name,
        tests=str(len(cases)),
        failures=str(sum(case.failure is not None for case in cases)),
        skipped=str(sum(case.skipped is not None for case in cases)),
        errors="0",
    )
    properties = ET.SubElement(suite, "properties")
    for key, value in (
        ("bundle", bundle),
        ("runtime", report.runtime),
        ("runtime_kind", report.runtime_kind),
        ("samples", str(report.samples)),
        ("data_fingerprint", str(report.data.get("fingerprint", ""))),
    ):
        ET.SubElement(properties, "property", name=key, value=value)
    for case in cases:
        element = ET.SubElement(suite, "testcase", classname=suite_name, name=case.name)
        if case.failure is not None:
            ET.SubElement(
                element, "failure", message=case.failure, type="drift"
            ).text = case.failure
        elif case.skipped is not None:
            ET.SubElement(element, "skipped", message=case.skipped)
    ET.indent(suites)
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
    )
