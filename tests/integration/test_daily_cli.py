"""The command line a daily user expects: builds that report like checks, targets built
independently, output that fits an 80-column terminal, and the small things (bare `edgepack`,
misspelt variables, completion, JUnit details)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from edgepack import api
from edgepack.errors import EXIT_CONVERSION, EXIT_USAGE
from tests.conftest import (
    DIGITS_CALIB,
    DIGITS_EVAL,
    DIGITS_MODEL,
    CliResult,
    assert_valid_manifest,
    write_gray_images,
)

Run = Callable[..., CliResult]


def test_one_failing_target_does_not_stop_the_others(run_cli: Run, tmp_path: Path) -> None:
    """CUMSUM has no int8 kernel: the full-int8 tflite target fails, the onnx one builds."""
    from tests.integration.models import savedmodel_with_cumsum

    savedmodel_with_cumsum(tmp_path / "cumsum")
    write_gray_images(tmp_path / "calib", 30, (6, 6), classes=3)
    result = run_cli("build", "cumsum", "-t", "tflite", "-t", "onnx", "-c", "calib", "-o", "out",
                     "--junit", "build.xml", "--json", "build.json", "--min-agreement", "off",
                     "--max-drop", "off", "--min-sqnr", "off")  # fmt: skip
    assert result.exit_code == EXIT_CONVERSION, result.stderr  # the worst of the targets'
    assert "Traceback" not in result.stdout + result.stderr
    assert "edgepack: tflite: conversion error: ops left in float" in result.stderr
    assert not (tmp_path / "out" / "cumsum-tflite").exists()
    manifest = json.loads((tmp_path / "out" / "cumsum-onnx" / "manifest.json").read_text())
    assert_valid_manifest(manifest)
    table = result.stdout
    assert re.search(r"tflite\s.*conversion error", table) and re.search(r"onnx\s.*pass", table)
    document = json.loads((tmp_path / "build.json").read_text())
    assert [t["target"] for t in document["targets"]] == ["onnx"]
    (failure,) = document["failures"]
    assert (failure["target"], failure["exit_code"]) == ("tflite", EXIT_CONVERSION)
    suites = ET.parse(tmp_path / "build.xml").getroot().findall("testsuite")
    errored = [s for s in suites if s.get("errors") == "1"]
    assert [s.get("name") for s in errored] == ["edgepack build tflite"]


def test_one_target_failing_alone_is_one_line(run_cli: Run, tmp_path: Path) -> None:
    from tests.integration.models import savedmodel_with_cumsum

    savedmodel_with_cumsum(tmp_path / "cumsum")
    write_gray_images(tmp_path / "calib", 20, (6, 6), classes=3)
    result = run_cli("-q", "build", "cumsum", "-t", "tflite", "-c", "calib", "-o", "out")
    assert result.exit_code == EXIT_CONVERSION
    assert len(result.stderr.strip().splitlines()) == 1


def test_build_writes_the_reports_check_writes(run_cli: Run, tmp_path: Path) -> None:
    result = run_cli("build", DIGITS_MODEL, "-t", "tflite", "-t", "onnx", "-c", DIGITS_CALIB,
                     "-e", DIGITS_EVAL, "-o", "out", "--json", "r.json", "--html", "r.html",
                     "--junit", "r.xml", "--layers", "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    document = json.loads((tmp_path / "r.json").read_text())
    tflite, onnx = document["targets"]
    assert (tflite["target"], onnx["target"]) == ("tflite", "onnx") and document["failures"] == []
    for target in (tflite, onnx):
        assert target["passed"] is True and target["drift"]["verdict"] == "pass"
        assert target["layers"]["layers"]  # --layers: per-layer drift, worst first
        assert target["compat"]["devices"]
    for name in ("tflite", "onnx"):
        page = (tmp_path / f"r-{name}.html").read_text()  # one page per target
        assert page.startswith("<!DOCTYPE html>") and "data:image/png;base64," in page
    suites = ET.parse(tmp_path / "r.xml").getroot().findall("testsuite")
    assert len(suites) == 2 and all(float(s.get("time", "0")) > 0 for s in suites)
    agreement = suites[0].find("testcase[@name='top-1 agreement']")
    assert agreement is not None and agreement.get("time") == "0"
    out = agreement.find("system-out")
    assert out is not None and re.fullmatch(
        r"measured: \d+\.\d\d% \(at least 99\.00%\)", out.text or ""
    )


def test_bare_edgepack_prints_the_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edgepack"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith("Usage: edgepack [OPTIONS] COMMAND")


@pytest.mark.parametrize("command", [["targets"], ["inspect", "nowhere"]])
def test_every_command_refuses_a_misspelt_variable(
    run_cli: Run, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.setenv("EDGEPACK_MAX_DROPP", "1%")
    result = run_cli(*command)
    assert result.exit_code == EXIT_USAGE
    assert "unknown environment variable EDGEPACK_MAX_DROPP" in result.stderr


def test_a_bad_variable_value_names_the_variable(
    run_cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGEPACK_MAX_DROP", "2")
    result = run_cli("targets")
    assert result.exit_code == EXIT_USAGE
    assert "EDGEPACK_MAX_DROP: expected a fraction" in result.stderr
    assert "drift.max_drop" not in result.stderr


def test_calib_method_is_a_choice(run_cli: Run) -> None:
    result = run_cli("build", DIGITS_MODEL, "-t", "onnx", "-c", DIGITS_CALIB,
                     "--calib-method", "kl")  # fmt: skip
    assert result.exit_code == EXIT_USAGE
    assert "'kl' is not one of 'minmax', 'percentile', 'entropy'" in result.stderr


def test_target_names_complete_in_the_shell() -> None:
    env = dict(os.environ, COMP_WORDS="edgepack build m -t tfl", COMP_CWORD="4",
               _EDGEPACK_COMPLETE="bash_complete")  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-c", "from edgepack.cli import cli; cli(prog_name='edgepack')"],
        env=env, capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    names = [line.split(",", 1)[1] for line in out.split()]
    assert names == ["tflite", "tflite-dynamic", "tflite-micro", "tflite-w8a16"]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("daily")
    (result,) = api.build(DIGITS_MODEL, "tflite", DIGITS_CALIB, out=out, cwd=out, environ={})
    return result.bundle


def in_terminal(args: list[str], cwd: Path, columns: int = 80) -> str:
    """Run ``edgepack ARGS`` in a pseudo-terminal ``columns`` wide; its output, escape codes
    removed."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.update(TERM="xterm-256color", NO_COLOR="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "edgepack", *args],
        stdin=follower, stdout=follower, stderr=follower, cwd=cwd, env=env,
    )  # fmt: skip
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        chunks.append(chunk)
    process.wait(timeout=600)
    os.close(leader)
    text = b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")
    # progress bars redraw a line after a carriage return: each drawing is a line
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text).replace("\r", "\n")


def test_inspect_fits_an_80_column_terminal(bundle: Path) -> None:
    text = in_terminal(["inspect", str(bundle)], bundle.parent)
    lines = text.splitlines()
    assert len(lines) > 10 and max(len(line) for line in lines) <= 80, text
    assert "…" not in text  # names wrap, they are not cut
    assert "(in the bundle)" in text and "firmware-notes/" not in text


def test_build_fits_an_80_column_terminal(tmp_path: Path) -> None:
    text = in_terminal(["build", str(DIGITS_MODEL), "-t", "tflite", "-c", str(DIGITS_CALIB),
                        "-o", str(tmp_path)], tmp_path)  # fmt: skip
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80, text
    assert "…" not in text
    assert "float model" in text and "/200" in text  # the drift check's progress bars drew
    # the bundle's path, folded across lines, is whole
    assert str(tmp_path / "digits-tflite") in "".join(line.strip(" │┃") for line in lines)


def test_piped_output_keeps_every_value_whole(bundle: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edgepack", "inspect", str(bundle)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "…" not in result.stdout
    assert "serving_default_image:0" in result.stdout  # a long tensor name, on one line


def test_set_changes_settings_per_target_from_the_command_line(
    run_cli: Run, tmp_path: Path
) -> None:
    result = run_cli("-q", "build", DIGITS_MODEL, "-t", "onnx", "-t", "coreml", "-c",
                     DIGITS_CALIB, "-o", "out", "--set", "quantize=fp16",
                     "--set", "targets.onnx.per_channel=false")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    onnx = json.loads((tmp_path / "out" / "digits-onnx" / "manifest.json").read_text())
    coreml = json.loads((tmp_path / "out" / "digits-coreml" / "manifest.json").read_text())
    assert onnx["target"]["settings"]["per_channel"] is False
    assert coreml["target"]["settings"]["quantize"] == "fp16"
    assert coreml["target"]["settings"]["per_channel"] is True
    bad = run_cli("-q", "build", DIGITS_MODEL, "-t", "onnx", "-c", DIGITS_CALIB,
                  "--set", "quantize=fp16")  # fmt: skip
    assert bad.exit_code == EXIT_USAGE and "no target of this build has" in bad.stderr
    assert not (tmp_path / "bundles").exists()


def test_targets_lists_every_setting(run_cli: Run) -> None:
    as_json = run_cli("targets", "--json")
    assert as_json.exit_code == 0
    profiles = {p["name"]: p for p in json.loads(as_json.stdout)}
    assert profiles["onnx"]["settings"]["per_channel"] is True  # a backend default, listed
    assert profiles["coreml"]["settings"]["quantize"] == "w8"
    assert profiles["tflite"]["compat"]["devices"][0] == "SM8650"
    verbose = run_cli("targets", "-v")
    assert 'quantize = "w8"' in verbose.stdout and "compat.devices" in verbose.stdout
