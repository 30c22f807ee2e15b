"""The parts of the onnx2tf bridge that need no conversion."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from edgepack.convert.onnx_to_tf import SAMPLE_FILE, _inside, _perm_between, _write_offline_sample
from edgepack.errors import ConversionError


def test_onnxsim_of_this_interpreter_is_found_without_an_activated_venv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    with _inside(tmp_path):
        assert Path.cwd() == tmp_path
        found = shutil.which("onnxsim")
        assert found is not None
        assert Path(found).parent == Path(sys.executable).parent
    assert os.environ["PATH"] == "/usr/bin:/bin"
    assert Path.cwd() != tmp_path


def test_offline_sample_has_the_shape_onnx2tf_expects(tmp_path: Path) -> None:
    batch = {"x": np.random.default_rng(0).random((5, 3, 48, 192)).astype(np.float32)}
    _write_offline_sample(tmp_path, batch)
    sample = np.load(tmp_path / SAMPLE_FILE)
    assert sample.shape == (20, 128, 128, 3) and sample.dtype == np.float32
    assert float(sample.std()) > 0.1  # real calibration pixels, not zeros


def test_layout_permutations() -> None:
    assert _perm_between((3, 8, 10), (8, 10, 3)) == (0, 2, 3, 1)
    assert _perm_between((1, 8, 10, 4), (1, 4, 8, 10), to_source=True) == (0, 3, 1, 2)
    assert _perm_between((1, 10), (1, 10)) is None
    with pytest.raises(ConversionError, match="changed a tensor's shape"):
        _perm_between((3, 8, 10), (8, 3, 10))
