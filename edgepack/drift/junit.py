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
    measured: str | None = None  # the value against the threshold, shown for passes too


def junit_cases(report: DriftReport) -> list[Case]:
    """The test cases of ``report``, in a stable order. A case fails with the report's own
    failure lines that belong to it (every execution path's, each naming its path), so JUnit
    says exactly what the verdict says."""
    limits = report.thresholds
    lines = [(_unlabelled(line), line) for line in report.failures]

    def failing(prefix: str) -> str | None:
        found = [line for bare, line in lines if bare.startswith(prefix)]
        return "; ".join(found) or None

    def case(
        name: str, limit: Any, value: Any, prefix: str, unmeasured: str, shown: str = ""
    ) -> Case:
        if limit is None:
            return Case(name, skipped="threshold off")
        if value is None:
            return Case(name, skipped=f"not measured: {unmeasured}")
        return Case(name, failure=failing(prefix), measured=shown)

    def pct(value: float | None) -> str:
        return "" if value is None else f"{value:.2%}"

    cases = [
        case("top-1 agreement", limits.min_agreement, report.top1_agreement,
             "top-1 agreement ", "no classifier output",
             f"{pct(report.top1_agreement)} (at least {pct(limits.min_agreement)})"),
        case("accuracy drop", limits.max_drop, report.accuracy_drop, "accuracy drop ",
             "no labels", f"{pct(report.accuracy_drop)} (at most {pct(limits.max_drop)})"),
    ]  # fmt: skip
    for output in report.outputs:
        cases.append(
            case(f"SQNR of {output.name}", limits.min_sqnr, output.sqnr_db,
                 f"SQNR of {output.name!r} ", "",
                 f"{output.sqnr_db:.2f} dB (at least {limits.min_sqnr} dB)")
        )  # fmt: skip
    for output in report.outputs:
        if output.detections is not None:
            cases.append(
                case(f"detection recall of {output.name}", limits.min_recall,
                     output.detections.recall, f"detection recall of {output.name!r} ",
                     "the float model detects nothing",
                     f"{pct(output.detections.recall)} (at least {pct(limits.min_recall)})")
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
        shown = None
        if placement is not None and placement.status == "ok":
            shown = (
                f"{placement.ops_offloaded}/{placement.ops_total} ops, "
                f"{placement.partitions} partitions ({placement.tool})"
            )
        cases.append(Case(f"every op on {device}", failure=problem, measured=shown))
    return cases


def build_junit_xml(results: Sequence[Any], failures: Sequence[tuple[str, Any]] = ()) -> str:
    """The JUnit XML document of a build: one suite per target, with its drift cases and one
    case per required NPU device; a target that failed to build is a suite with one errored
    case, ``build``."""
    suites = ET.Element("testsuites", name="edgepack build")
    for target, error in failures:
        suite = ET.SubElement(
            suites, "testsuite", name=f"edgepack build {target}", tests="1", failures="0",
            skipped="0", errors="1",
        )  # fmt: skip
        case = ET.SubElement(suite, "testcase", classname=f"edgepack build {target}", name="build")
        message = f"{error.kind}: {error}"
        ET.SubElement(case, "error", message=message, type=error.kind).text = message
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
            time=f"{result.seconds:.3f}",
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
        element = ET.SubElement(suite, "testcase", classname=classname, name=case.name, time="0")
        if case.failure is not None:
            kind = "placement" if case.name.startswith("every op on ") else "drift"
            ET.SubElement(element, "failure", message=case.failure, type=kind).text = case.failure
        elif case.skipped is not None:
            ET.SubElement(element, "skipped", message=case.skipped)
        if case.measured:
            ET.SubElement(element, "system-out").text = f"measured: {case.measured}"


def _unlabelled(line: str) -> str:
    """A failure line without its ``[path] `` label."""
    if line.startswith("[") and "] " in line:
        return line.split("] ", 1)[1]
    return line


def junit_xml(report: DriftReport, bundle: str, seconds: float | None = None) -> str:
    """The JUnit XML document of ``report`` for ``bundle`` (``seconds``: the check's time,
    on the suite; the cases share it and have none of their own)."""
    cases = junit_cases(report)
    suite_name = f"edgepack drift {Path(bundle).name}"
    suites = ET.Element("testsuites", name="edgepack check")
    attributes = {
        "name": suite_name,
        "tests": str(len(cases)),
        "failures": str(sum(case.failure is not None for case in cases)),
        "skipped": str(sum(case.skipped is not None for case in cases)),
        "errors": "0",
    }
    if seconds is not None:
        attributes["time"] = f"{seconds:.3f}"
    suite = ET.SubElement(suites, "testsuite", attributes)
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
