"""Many drift verdicts in one table: ``edgepack report`` merges the reports that many builds and
checks wrote (a CI matrix's jobs, one per model and target) into one table, a Markdown table for
a CI job summary, an HTML index and one JUnit document.

Reads, from files or folders (searched recursively):

- ``check --json`` reports (a drift report with its ``bundle``);
- ``build --json`` documents (``targets`` and ``failures``: a failed target is an ``error`` row);
- bundles: a ``drift.json`` beside its ``manifest.json``;
- JUnit XML written by ``check --junit`` / ``build --junit`` (merged, not rows).
"""

from __future__ import annotations

import html
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgepack.errors import InputError


@dataclass(frozen=True)
class Row:
    """One verdict: where it was read, the bundle and target, and its figures."""

    source: str
    bundle: str
    target: str
    verdict: str  # pass | fail | error
    top1_agreement: float | None = None
    accuracy_drop: float | None = None
    min_sqnr_db: float | None = None
    samples: int | None = None
    detail: str = ""  # the failures, or the build error
    page: str | None = None  # an HTML report beside the JSON one

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Summary:
    rows: tuple[Row, ...]
    junit: tuple[Path, ...]  # the JUnit files found

    @property
    def passed(self) -> bool:
        return all(row.verdict == "pass" for row in self.rows)


def collect(paths: Sequence[Path]) -> Summary:
    """Every report under ``paths``, in a stable order (sorted by file)."""
    rows: list[Row] = []
    junit: list[Path] = []
    for path in paths:
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if file.suffix == ".xml" and _is_edgepack_junit(file):
                junit.append(file)
            elif file.suffix == ".json":
                found = _rows_of(file)
                if found is None and not path.is_dir():
                    raise InputError(f"{file}: not an edgepack drift report")
                rows += found or []
            elif not path.is_dir():
                raise InputError(f"{file}: not an edgepack report (.json or JUnit .xml)")
    if not rows and not junit:
        where = ", ".join(str(p) for p in paths)
        raise InputError(f"no edgepack reports in {where} (check --json, build --json, bundles)")
    return Summary(tuple(rows), tuple(junit))


def _rows_of(file: Path) -> list[Row] | None:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, OSError):
        return None
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("targets"), list) and isinstance(data.get("failures"), list):
        return _build_rows(file, data)
    if file.name == "drift.json" and (file.parent / "manifest.json").is_file():
        manifest = _json_or_none(file.parent / "manifest.json") or {}
        target = str((manifest.get("target") or {}).get("profile", ""))
        return [_drift_row(file, data, str(file.parent), target)]
    if isinstance(data.get("bundle"), str) and "verdict" in data and "samples" in data:
        bundle = data["bundle"]
        manifest = _json_or_none(Path(bundle) / "manifest.json") or {}
        target = str((manifest.get("target") or {}).get("profile", "")) or _target_of(bundle)
        return [_drift_row(file, data, bundle, target)]
    return None


def _build_rows(file: Path, data: dict[str, Any]) -> list[Row]:
    rows = []
    for target in data["targets"]:
        row = _drift_row(file, target.get("drift") or {}, str(target["bundle"]), target["target"])
        if not target.get("passed", True) and row.verdict == "pass":  # placement gate
            failures = (target.get("compat") or {}).get("failures") or []
            row = Row(**{**row.__dict__, "verdict": "fail", "detail": "; ".join(failures)})
        rows.append(row)
    for failure in data["failures"]:
        detail = f"{failure.get('kind')}: {failure.get('message')}"
        rows.append(Row(str(file), "", str(failure.get("target")), "error", detail=detail))
    return rows


def _drift_row(file: Path, report: dict[str, Any], bundle: str, target: str) -> Row:
    page = file.with_suffix(".html")
    return Row(
        source=str(file),
        bundle=bundle,
        target=target,
        verdict="pass" if report.get("verdict") == "pass" else "fail",
        top1_agreement=report.get("top1_agreement"),
        accuracy_drop=report.get("accuracy_drop"),
        min_sqnr_db=report.get("min_sqnr_db"),
        samples=report.get("samples"),
        detail="; ".join(report.get("failures") or []),
        page=page.name if page.is_file() else None,
    )


def _target_of(bundle: str) -> str:
    """``bundles/digits-tflite`` -> ``tflite`` when the bundle is not at hand."""
    name = Path(bundle).name
    return name.rsplit("-", 1)[-1] if "-" in name else ""


def _json_or_none(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _is_edgepack_junit(file: Path) -> bool:
    try:
        root = ET.parse(file).getroot()
    except (ET.ParseError, OSError):
        return False
    return root.tag == "testsuites" and str(root.get("name", "")).startswith("edgepack")


# ---------------------------------------------------------------------------- outputs

COLUMNS = ("bundle", "target", "verdict", "agreement", "accuracy drop", "min SQNR", "samples")


def cells(row: Row) -> list[str]:
    """A row's table cells, as text."""
    return [
        Path(row.bundle).name if row.bundle else "-",
        row.target or "-",
        row.verdict,
        percent(row.top1_agreement),
        percent(row.accuracy_drop),
        "-" if row.min_sqnr_db is None else f"{row.min_sqnr_db:.2f} dB",
        "-" if row.samples is None else str(row.samples),
    ]


def markdown(summary: Summary) -> str:
    """A Markdown table (GitHub's job summary), the failures listed under it."""
    passed = sum(row.verdict == "pass" for row in summary.rows)
    lines = [
        f"### edgepack: {passed} of {len(summary.rows)} verdicts pass",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for row in summary.rows:
        shown = cells(row)
        if row.verdict != "pass":
            shown[2] = f"**{row.verdict}**"
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in shown) + " |")
    failing = [row for row in summary.rows if row.verdict != "pass" and row.detail]
    if failing:
        lines += ["", *[f"- `{r.target}` {Path(r.bundle).name}: {r.detail}" for r in failing]]
    return "\n".join(lines) + "\n"


def html_index(summary: Summary) -> str:
    """A self-contained HTML page: the table, each row linking its HTML report if one lies
    beside its JSON report."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = []
    for row in summary.rows:
        shown = [html.escape(c) for c in cells(row)]
        if row.page:
            link = html.escape(str(Path(row.source).with_name(row.page)))
            shown[0] = f'<a href="{link}">{shown[0]}</a>'
        css = "pass" if row.verdict == "pass" else "fail"
        shown[2] = f'<span class="{css}">{shown[2]}</span>'
        detail = f'<tr><td colspan="7">{html.escape(row.detail)}</td></tr>' if row.detail else ""
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in shown) + "</tr>" + detail)
    passed = sum(row.verdict == "pass" for row in summary.rows)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>edgepack report</title><style>body{font-family:sans-serif}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
        ".pass{color:#070}.fail{color:#b00;font-weight:bold}</style></head><body>"
        f"<h1>edgepack: {passed} of {len(summary.rows)} verdicts pass</h1>"
        f"<table><tr>{head}</tr>{''.join(body)}</table></body></html>\n"
    )


def merged_junit(files: Iterable[Path]) -> str:
    """One JUnit document with every test suite of ``files``."""
    merged = ET.Element("testsuites", name="edgepack report")
    for file in files:
        for suite in ET.parse(file).getroot().findall("testsuite"):
            merged.append(suite)
    ET.indent(merged)
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(merged, encoding="unicode") + "\n"
    )


def percent(value: float | None) -> str:
    """A share as the reports print it (``99.25%``), ``-`` when not measured."""
    return "-" if value is None else f"{value:.2%}"
