"""The README's promises that tooling depends on: two Quickstart commands, CI runs one verbatim."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def quickstart_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return [line.strip() for line in section.splitlines() if line.startswith("    ")]


def test_quickstart_has_exactly_two_commands() -> None:
    commands = quickstart_commands()
    assert len(commands) == 2, commands
    build, tests = commands
    assert "pip install" in build and "edgepack build examples/digits/digits.keras" in build
    assert "--calib calibration/digits/calib" in build
    assert "pip install" in tests and tests.endswith("pytest -n auto")  # both CI cores


def test_ci_runs_the_test_command_verbatim() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    assert quickstart_commands()[1] in ci.splitlines()


def test_every_exit_code_is_documented() -> None:
    from edgepack import errors

    readme = (REPO / "README.md").read_text()
    codes = {value for name, value in vars(errors).items() if name.startswith("EXIT_")}
    for code in codes:
        assert re.search(rf"^\| {code} \|", readme, re.MULTILINE), code


def test_quickstart_paths_exist() -> None:
    build = quickstart_commands()[0]
    for path in re.findall(r"(?:examples|calibration)/[\w/.-]+", build):
        assert (REPO / path).exists(), path
