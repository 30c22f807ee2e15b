"""CLI behaviour that needs no model: start-up cost, version, usage errors, exit codes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from edgepack import __version__
from edgepack.errors import EXIT_INPUT, EXIT_USAGE
from tests.conftest import CliResult, assert_one_line_error

HEAVY = ("tensorflow", "keras", "onnxruntime", "coremltools", "ai_edge_litert", "onnx")


@pytest.mark.parametrize(
    "args",
    [["--help"], ["build", "--help"], ["check", "--help"], ["inspect", "--help"], ["targets"]],
)
def test_help_and_targets_do_not_import_ml_libraries(args: list[str]) -> None:
    code = (
        "import sys\n"
        "from edgepack.cli import cli\n"
        "try:\n"
        f"    cli.main({args!r}, prog_name='edgepack')\n"
        "except SystemExit as exit:\n"
        "    assert exit.code in (0, None), exit.code\n"
        f"loaded = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print('LOADED', loaded)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert "LOADED []" in result.stdout, result.stdout


def test_python_dash_m_and_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edgepack", "--version"], capture_output=True, text=True, check=True
    )
    assert __version__ in result.stdout


def test_every_command_has_verbosity_and_help(run_cli: Callable[..., CliResult]) -> None:
    for command in ("build", "check", "inspect", "targets"):
        text = run_cli(command, "--help").stdout
        assert "--verbose" in text and "--quiet" in text and "--help" in text


def test_targets_lists_tflite(run_cli: Callable[..., CliResult]) -> None:
    result = run_cli("targets")
    assert result.exit_code == 0
    assert "tflite" in result.stdout and "Android" in result.stdout


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["build", "m.keras", "--calib", "c"], EXIT_USAGE, "--target"),
        (
            ["build", "m.keras", "-t", "tflite", "-c", "c", "--num-calib", "many"],
            EXIT_USAGE,
            "many",
        ),
        (["frobnicate"], EXIT_USAGE, "frobnicate"),
        (["build", "missing.keras", "-t", "tflite", "-c", "c"], EXIT_INPUT, "no such model file"),
        (["build", "model.pt", "-t", "tflite", "-c", "c"], EXIT_INPUT, "unknown model format"),
        (["build", "model.keras", "-t", "tflight", "-c", "c"], EXIT_USAGE, "unknown target"),
        (["check", "nowhere", "--data", "d"], 6, "no such bundle"),
        (["inspect", "nowhere"], 6, "no such bundle"),
    ],
)
def test_usage_and_input_errors_are_one_line(
    run_cli: Callable[..., CliResult], tmp_path: Path, args: list[str], code: int, needle: str
) -> None:
    (tmp_path / "model.pt").write_bytes(b"x")
    (tmp_path / "model.keras").write_bytes(b"x")
    assert_one_line_error(run_cli("-q", *args), code, needle)


def test_unknown_environment_variable_fails_the_build(
    run_cli: Callable[..., CliResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGEPACK_MAXDROP", "1%")
    (tmp_path / "model.keras").write_bytes(b"x")
    result = run_cli("-q", "build", "model.keras", "-t", "tflite", "-c", "c")
    assert_one_line_error(result, EXIT_USAGE, "EDGEPACK_MAXDROP")
