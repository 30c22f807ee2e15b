"""A detector-style output whose class scores collapse in a real int8 bundle: the check fails
on it (exit 1) though the whole-tensor SQNR looks fine, passes with --allow-collapse, measures
declared slices from the project config, and writes JSON and JUnit reports."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliResult, write_gray_images
from tests.integration.models import savedmodel_detector_head, uint8_tflite_profile
from tests.unit.test_channels import validate_drift_report


@pytest.fixture
def detector_bundle(run_cli: Callable[..., CliResult], tmp_path: Path) -> Path:
    """A detector whose scores collapse: built on a profile with no 16-bit path (where one
    exists, the mixed-range output gets it and the scores survive)."""
    savedmodel_detector_head(tmp_path / "detector")
    write_gray_images(tmp_path / "calib", 60, (6, 6))
    result = run_cli(
        "-q", "build", "detector", "-t", uint8_tflite_profile(tmp_path), "-c", "calib",
        "-n", "40", "--min-agreement", "off", "--max-drop", "off", "--allow-collapse",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    return tmp_path / "bundles" / "detector-tflite-uint8"


def test_check_fails_on_collapsed_scores(
    run_cli: Callable[..., CliResult], tmp_path: Path, detector_bundle: Path
) -> None:
    result = run_cli(
        "check", str(detector_bundle), "-d", "calib", "--min-agreement", "off",
        "--max-drop", "off", "--json", "report.json", "--junit", "report.xml",
    )  # fmt: skip
    assert result.exit_code == 1, result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    validate_drift_report(report)
    (output,) = report["outputs"]
    assert output["sqnr_db"] > 30  # the whole tensor looks fine ...
    collapsed = [c["name"] for c in output["channels"] if c["collapsed"]]
    assert collapsed and set(collapsed) <= {"channel 4", "channel 5", "channel 6"}  # ... scores
    assert all(not c["collapsed"] for c in output["channels"][:4])  # boxes survive
    assert "collapsed" in result.stderr and "channel" in result.stderr
    suite = ET.parse(tmp_path / "report.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "1"
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert failed == ["no collapsed channel in detections"]

    allowed = run_cli(
        "-q", "check", str(detector_bundle), "-d", "calib", "--min-agreement", "off",
        "--max-drop", "off", "--allow-collapse",
    )  # fmt: skip
    assert allowed.exit_code == 0, allowed.stderr


def test_declared_slices_from_the_project_config(
    run_cli: Callable[..., CliResult], tmp_path: Path, detector_bundle: Path
) -> None:
    (tmp_path / "edgepack.toml").write_text(
        '[drift]\nmin_agreement = "off"\nmax_drop = "off"\n\n'
        '[drift.slices]\ndetections = { boxes = "0:4", scores = "4:" }\n'
    )
    result = run_cli("-q", "check", str(detector_bundle), "-d", "calib", "--json", "r.json")
    assert result.exit_code == 1
    channels = json.loads((tmp_path / "r.json").read_text())["outputs"][0]["channels"]
    assert [(c["name"], c["collapsed"]) for c in channels] == [
        ("boxes", False),
        ("scores", True),
    ]
    assert "output 'detections' scores collapsed" in result.stderr


def test_progress_is_reported_per_phase(
    run_cli: Callable[..., CliResult], tmp_path: Path, detector_bundle: Path
) -> None:
    import edgepack

    calls: list[tuple[str, int, int]] = []
    edgepack.check(
        detector_bundle, tmp_path / "calib", allow_collapse=True, layers=True,
        min_agreement="off", max_drop="off", progress=lambda *c: calls.append(c),
        cwd=tmp_path, environ={},
    )  # fmt: skip
    phases = {phase: (done, total) for phase, done, total in calls}
    assert phases == {
        "float model": (60, 60),
        "bundle (host, builtin)": (60, 60),
        "bundle (host, xnnpack)": (60, 60),
        "bundle (host, reference)": (60, 60),
        "per-layer capture": (1, 1),
    }
    assert [c for c in calls if c[0] == "float model"] == [
        ("float model", 0, 60), ("float model", 32, 60), ("float model", 60, 60)
    ]  # fmt: skip
    # not a terminal here: no bars, and the flag is accepted
    result = run_cli(
        "check", str(detector_bundle), "-d", "calib", "--allow-collapse", "--no-progress",
        "--min-agreement", "off", "--max-drop", "off",
    )  # fmt: skip
    assert result.exit_code == 0 and "━" not in result.stderr


def test_a_check_that_cannot_run_exits_3_and_writes_no_report(
    run_cli: Callable[..., CliResult], tmp_path: Path, detector_bundle: Path
) -> None:
    from tests.conftest import assert_one_line_error

    result = run_cli(
        "-q", "check", str(detector_bundle), "-d", "no-such-folder", "--layers",
        "--json", "r.json", "--junit", "r.xml", "--html", "r.html",
    )  # fmt: skip
    assert_one_line_error(result, 3, "no-such-folder")
    assert not any((tmp_path / name).exists() for name in ("r.json", "r.xml", "r.html"))
