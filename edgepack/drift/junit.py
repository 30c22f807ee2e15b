"""The drift verdict as JUnit XML, so CI systems show each threshold like a test.

One test suite per report; one test case per threshold that applies (top-1 agreement, accuracy
drop, the SQNR of each output, the detection recall of each detection output) and one per
output for channel collapse. A threshold that is off, or that cannot be measured (no labels, no
classifier output), is a skipped test case; a broken one is a failure whose message is the
report's own failure lines (of every execution path, each naming its path). A build's document
(``build --junit``) has one suite per target, with a case per NPU device the build requires.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
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
    """The test cases of ``report``, in a stable order. A case fails with the report's own
    failure lines that belong to it (every execution path's, each naming its path), so JUnit
    says exactly what the verdict says."""
    limits = report.thresholds
    lines = [(_unlabelled(line), line) for line in report.failures]

    def failing(prefix: str) -> str | None:
        found = [line for bare, line in lines if bare.startswith(prefix)]
        return "; ".join(found) or None

    def case(name: str, limit: Any, value: Any, prefix: str, unmeasured: str) -> Case:
        if limit is None:
            return Case(name, skipped="threshold off")
        if value is None:
            return Case(name, skipped=f"not measured: {unmeasured}")
        return Case(name, failure=failing(prefix))

    cases = [
        case("top-1 agreement", limits.min_agreement, report.top1_agreement,
             "top-1 agreement ", "no classifier output"),
        case("accuracy drop", limits.max_drop, report.accuracy_drop, "accuracy drop ",
             "no labels"),
    ]  # fmt: skip
    for output in report.outputs:
        cases.append(
            case(f"SQNR of {output.name}", limits.min_sqnr, output.sqnr_db,
                 f"SQNR of {output.name!r} ", "")
        )  # fmt: skip
    for output in report.outputs:
        if output.detections is not None:
            cases.append(
                case(f"detection recall of {output.name}", limits.min_recall,
                     output.detections.recall, f"detection recall of {output.name!r} ",
                     "the float model detects nothing")
            )  # fmt: skip
    for output in report.outputs:
        name = f"no collapsed channel in {output.name}"
        collapsed = failing(f"output {output.name!r} ")
        if output.channels is None and collapsed is None:
            cases.append(Case(name, skipped="channels not measured apart (similar ranges)"))
        elif limits.allow_collapse:
            cases.append(Case(name))
        else:
            cases.append(Case(name, failure=collapsed))
    return cases


def placement_cases(compat: Any) -> list[Case]:
    """One case per device the build requires: it fails with the ops that fall off it."""
    if compat is None:
        return []
    found = {p.device.lower(): p for p in compat.placements}
    cases = []
    for device in compat.require:
        placement = found.get(device.lower())
        problem = "not placed" if placement is None else placement.problem()
        cases.append(Case(f"every op on {device}", failure=problem))
    return cases


def build_junit_xml(results: Sequence[Any]) -> str:
    """The JUnit XML document of a build: one suite per target, with its drift cases and one
    case per required NPU device."""
    suites = ET.Element("testsuites", name="edgepack build")
    for result in results:
        cases = junit_cases(result.report) + placement_cases(result.compat)
        name = f"edgepack build {Path(result.bundle).name}"
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=name,
            tests=str(len(cases)),
            failures=str(sum(case.failure is not None for case in cases)),
            skipped=str(sum(case.skipped is not None for case in cases)),
            errors="0",
        )
        properties = ET.SubElement(suite, "properties")
        for key, value in (
            ("target", result.target),
            ("bundle", str(result.bundle)),
            ("runtime", result.report.runtime),
            ("samples", str(result.report.samples)),
        ):
            ET.SubElement(properties, "property", name=key, value=value)
        _add_cases(suite, name, cases)
    ET.indent(suites)
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
    )


def _add_cases(suite: ET.Element, classname: str, cases: Sequence[Case]) -> None:
    for case in cases:
        element = ET.SubElement(suite, "testcase", classname=classname, name=case.name)
        if case.failure is not None:
            kind = "placement" if case.name.startswith("every op on ") else "drift"
            ET.SubElement(element, "failure", message=case.failure, type=kind).text = case.failure
        elif case.skipped is not None:
            ET.SubElement(element, "skipped", message=case.skipped)


def _unlabelled(line: str) -> str:
    """A failure line without its ``[path] `` label."""
    if line.startswith("[") and "] " in line:
        return line.split("] ", 1)[1]
    return line


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
        ("paths", ", ".join(p.name for p in report.paths) or report.path),
        ("data_fingerprint", str(report.data.get("fingerprint", ""))),
    ):
        ET.SubElement(properties, "property", name=key, value=value)
    _add_cases(suite, suite_name, cases)
    ET.indent(suites)
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
    )
