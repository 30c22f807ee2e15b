"""The CI-matrix recipe (examples/ci-matrix/): the workflow's matrix expanded as GitHub Actions
expands it, each job's command run as the workflow runs it, then the summary job's `edgepack
report` merging every job's reports into one table, HTML index, JUnit file and job summary."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "examples" / "ci-matrix"


def workflow() -> dict[str, Any]:
    return dict(yaml.safe_load((RECIPE / "github-actions.yml").read_text()))


def expand(matrix: dict[str, Any]) -> list[dict[str, str]]:
    """GitHub's expansion: the product of the list keys, each combination extended by the
    `include` entries that match it."""
    keys = [k for k in matrix if k != "include"]
    jobs = [
        dict(zip(keys, values, strict=True))
        for values in itertools.product(*(matrix[k] for k in keys))
    ]
    for extra in matrix.get("include", []):
        for job in jobs:
            if all(job.get(k) == v for k, v in extra.items() if k in keys):
                job.update(extra)
    return jobs


def checkout(folder: Path) -> Path:
    """A runner's working copy: the repository's examples and calibration sets, linked."""
    folder.mkdir(parents=True)
    for name in ("examples", "calibration"):
        (folder / name).symlink_to(REPO / name)
    return folder


def run_step(command: str, matrix: dict[str, str], cwd: Path, **env: str) -> int:
    """A workflow step's `run`, with the matrix values put in, from the checkout ``cwd``."""
    for key, value in matrix.items():
        command = command.replace(f"${{{{ matrix.{key} }}}}", value)
    assert "${{" not in command, command
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EDGEPACK_")}
    environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environ.get('PATH', '')}"
    environ.update(env)
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=environ, timeout=900,
                          check=False).returncode  # fmt: skip


def step(job: dict[str, Any], name: str) -> str:
    return next(s["run"] for s in job["steps"] if s.get("name") == name)


@pytest.mark.slow
def test_matrix_jobs_then_one_summary(tmp_path: Path) -> None:
    jobs = workflow()["jobs"]
    combinations = expand(jobs["bundle"]["strategy"]["matrix"])
    assert [(c["model"], c["target"]) for c in combinations] == [
        ("digits", "tflite"), ("digits", "onnx"), ("digits", "coreml")
    ]  # fmt: skip
    artefacts = tmp_path / "artefacts"
    for index, combination in enumerate(combinations):
        job_dir = checkout(tmp_path / f"job{index}")  # each job on its own runner
        code = run_step(step(jobs["bundle"], "Build and check"), combination, job_dir)
        assert code == 0, combination
        for report in (job_dir / "reports").iterdir():  # download-artifact, merge-multiple
            artefacts.mkdir(exist_ok=True)
            report.rename(artefacts / report.name)
    summary_file = tmp_path / "step-summary.md"
    checkout(tmp_path / "summary")
    (tmp_path / "summary" / "reports").symlink_to(artefacts)
    code = run_step(step(jobs["summary"], "Merge the reports"), {}, tmp_path / "summary",
                    GITHUB_STEP_SUMMARY=str(summary_file))  # fmt: skip
    assert code == 0
    markdown = summary_file.read_text()
    assert markdown.startswith("### edgepack: 3 of 3 verdicts pass")
    for target in ("tflite", "onnx", "coreml"):
        assert f"| digits-{target} | {target} | pass |" in markdown
    index = (artefacts / "index.html").read_text()
    assert index.count('<a href="') == 3  # each row links its job's HTML report
    merged = ET.parse(artefacts / "all.xml").getroot()
    assert len(merged.findall("testsuite")) == 3


def test_a_failing_job_fails_the_summary(tmp_path: Path) -> None:
    checkout(tmp_path / "runner")
    tmp_path = tmp_path / "runner"
    (tmp_path / "reports").mkdir()
    failing = {
        "targets": [],
        "failures": [{"target": "tflite", "kind": "conversion error", "exit_code": 4,
                      "message": "ops left in float: CUMSUM"}],
    }  # fmt: skip
    (tmp_path / "reports" / "m-tflite.json").write_text(json.dumps(failing))
    summary = tmp_path / "summary.md"
    code = run_step(step(workflow()["jobs"]["summary"], "Merge the reports"), {}, tmp_path,
                    GITHUB_STEP_SUMMARY=str(summary))  # fmt: skip
    assert code == 1
    text = summary.read_text()
    assert "0 of 1 verdicts pass" in text and "**error**" in text and "CUMSUM" in text


def test_report_refuses_what_is_not_a_report(tmp_path: Path) -> None:
    (tmp_path / "notes.json").write_text("{}")
    result = subprocess.run(
        [sys.executable, "-m", "edgepack", "report", str(tmp_path / "notes.json")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 3
    assert (
        result.stderr.strip()
        == f"edgepack: input error: {tmp_path / 'notes.json'}: not an edgepack drift report"
    )
