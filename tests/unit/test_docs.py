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


def test_every_option_of_every_command_is_in_the_readme() -> None:
    import click

    from edgepack.cli import cli

    readme = (REPO / "README.md").read_text()
    missing = []
    for name, command in [("", cli), *cli.commands.items()]:
        for param in command.params:
            if not isinstance(param, click.Option) or param.name in {"help", "version"}:
                continue
            flags = [*param.opts, *param.secondary_opts]
            longest = max(flags, key=len)
            if not re.search(rf"`[^`]*{re.escape(longest)}(?![\w-])", readme):
                missing.append(f"{name or 'edgepack'} {longest}")
    assert not missing, missing


def readme_commands() -> list[str]:
    """Every `edgepack ...` command the README shows: in code blocks, indented lines and
    inline code (synopses with [optional] parts or ... left out)."""
    text = (REPO / "README.md").read_text()
    code: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        if fenced or line.startswith("    "):
            code.append(line.strip())
        code += re.findall(r"`(edgepack [^`]+)`", line)
    commands = []
    for line in code:
        for piece in re.split(r"\s*(?:&&|\|\||;|\|)\s*", line.split(" #", 1)[0]):
            part = piece.strip()
            if part.startswith("edgepack ") and "[" not in part and "..." not in part:
                commands.append(part)
    return commands


def test_every_readme_command_parses() -> None:
    import shlex

    import click

    from edgepack.cli import cli

    commands = readme_commands()
    assert len(commands) >= 10, commands
    failures = []
    for command in commands:
        args = shlex.split(command)[1:]
        try:
            if args[0].startswith("-"):
                cli.make_context("edgepack", args).close()
                continue
            sub = cli.commands.get(args[0])
            if sub is None:
                failures.append(f"{command}: no command {args[0]!r}")
                continue
            sub.make_context(f"edgepack {args[0]}", args[1:]).close()
        except (click.exceptions.Exit, click.MissingParameter):
            continue  # --version / --help; a synopsis that leaves out an argument
        except click.ClickException as exc:
            failures.append(f"{command}: {exc.format_message()}")
    assert not failures, failures
