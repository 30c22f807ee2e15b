"""The Python API type-checks for users: the package ships py.typed, edgepack.build is the
typed function (not Any through a lazy attribute), and a target may be given as a string."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import edgepack
from edgepack import api

USER_CODE = """\
import edgepack

results = edgepack.build("model.keras", "onnx", "calibration/set")
reveal_type(edgepack.build)
agreement: int = results[0].report.top1_agreement
passed: bool = results[0].passed
"""


def test_the_package_is_typed() -> None:
    assert (Path(edgepack.__file__).parent / "py.typed").is_file()
    assert edgepack.build is api.build and edgepack.check is api.check


def test_mypy_checks_user_code_against_the_api(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    script = tmp_path / "user.py"
    script.write_text(USER_CODE)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir", str(tmp_path / "c"),
         "--follow-imports=silent", str(script)],
        capture_output=True, text=True, cwd=tmp_path, check=False,
    )  # fmt: skip
    out = result.stdout
    revealed = (
        'Revealed type is "def (model: str | os.PathLike[str], targets: typing.Sequence[str] | str'
    )
    assert revealed in out and '-> list[edgepack.api.BuildResult]"' in out, out
    # the report is typed: a float | None is not an int
    assert (
        'user.py:5: error: Incompatible types in assignment (expression has type "float | None"'
        in out
    ), out
    assert "user.py:6" not in out, out


def test_one_target_may_be_a_string() -> None:
    assert [p.name for p in api.resolve_targets("onnx")] == ["onnx"]
