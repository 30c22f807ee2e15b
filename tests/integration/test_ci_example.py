"""The CI example (examples/ci/): the shell script builds the digits example for every
target, checks each bundle with the thresholds of its edgepack.toml, writes HTML, JSON and
JUnit reports, and fails on drift; the GitHub Actions workflow runs that script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.unit.test_channels import validate_drift_report

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "examples" / "ci" / "drift-check.sh"
TARGETS = {"digits-tflite", "digits-onnx", "digits-coreml"}  # --target all: one per backend


def run_script(reports: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EDGEPACK_")}
    environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environ.get('PATH', '')}"
    environ.update(env)
    return subprocess.run(
        ["bash", str(SCRIPT), str(reports)],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def junit_counts(path: Path) -> tuple[int, int]:
    suite = ET.parse(path).getroot().find("testsuite")
    assert suite is not None
    return int(suite.get("tests", "0")), int(suite.get("failures", "0"))


@pytest.mark.slow
def test_ci_script_passes_and_keeps_reports(tmp_path: Path) -> None:
    result = run_script(tmp_path / "reports")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    reports = tmp_path / "reports"
    assert {p.stem for p in reports.glob("*.html")} == TARGETS
    for target in TARGETS:
        report = json.loads((reports / f"{target}.json").read_text())
        validate_drift_report(report)
        assert report["verdict"] == "pass" and report["layers"]["layers"]
        tests, failures = junit_counts(reports / f"{target}.xml")
        assert tests == 4 and failures == 0  # agreement, drop, SQNR, collapse (one output)
        assert "data:image/png;base64," in (reports / f"{target}.html").read_text()
    coreml = json.loads((reports / "digits-coreml.json").read_text())
    assert coreml["thresholds"]["min_sqnr"] == 45  # the per-target table of edgepack.toml
    tflite = json.loads((reports / "digits-tflite.json").read_text())
    assert tflite["thresholds"]["min_sqnr"] == 35


@pytest.mark.slow
def test_ci_script_fails_on_drift(tmp_path: Path) -> None:
    result = run_script(tmp_path / "reports", EDGEPACK_MIN_SQNR="90")
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stdout.count("exit 1") == len(TARGETS)  # every bundle still checked
    for target in TARGETS:
        assert junit_counts(tmp_path / "reports" / f"{target}.xml") == (4, 1)  # the SQNR case


def test_github_workflow_runs_the_script_and_uploads_the_reports() -> None:
    yaml = pytest.importorskip("yaml")
    workflow = yaml.safe_load((REPO / "examples" / "ci" / "github-actions.yml").read_text())
    steps = workflow["jobs"]["drift"]["steps"]
    runs = [step.get("run", "") for step in steps]
    assert "python -m pip install ." in runs
    assert "examples/ci/drift-check.sh reports" in runs
    uploads = [step for step in steps if str(step.get("uses", "")).startswith("actions/upload")]
    assert uploads and uploads[0]["with"]["path"] == "reports/"
    assert uploads[0]["if"] == "always()"
