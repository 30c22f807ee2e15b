"""When onnxruntime cannot load the model its quantizer wrote and its error names a node, the
onnx backend quantizes again with that node float (bounded), and says so."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest

import edgepack.backends.onnx as onnx_backend
from edgepack.errors import EXIT_CONVERSION, UnloadableModelError
from tests.conftest import CliResult, assert_one_line_error
from tests.integration.models import conv_onnx
from tests.integration.test_onnx_sources import build_lenient, rgb_set

Run = Callable[..., CliResult]
ORT_ERROR = (
    "[ONNXRuntimeError] : 1 : FAIL : Load model failed: Type Error: Type (tensor(int8)) of "
    "input parameter (relu_in) of operator (Relu) in node ({node}) is invalid."
)


def named_conv(path: Path) -> Path:
    """The conv classifier with every node named, as exporters write them."""
    model = onnx.load(str(conv_onnx(path)))
    for index, node in enumerate(model.graph.node):
        node.name = f"{node.op_type.lower()}_{index}"
    onnx.save(model, str(path))
    return path


def refusing(names: list[str], monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Make the loadability check refuse the QDQ model while it still quantizes ``names``'s
    nodes, naming them one after the other; returns each attempt's float nodes."""
    attempts: list[list[str]] = []
    original = onnx_backend._quantize

    def quantize(model, target, reader, settings, plan=None, kept_float=(), wide=()) -> None:
        attempts.append(list(kept_float))
        original(model, target, reader, settings, plan, kept_float, wide)
        pending = [n for n in names if n not in kept_float]
        if pending:
            text = ORT_ERROR.format(node=pending[0])
            raise UnloadableModelError(
                f"onnxruntime wrote a model it cannot load: {text}", pending[0]
            )

    monkeypatch.setattr(onnx_backend, "_quantize", quantize)
    return attempts


def test_the_named_node_is_left_float_and_recorded(
    run_cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    named_conv(tmp_path / "conv.onnx")
    rgb_set(tmp_path / "calib", "NCHW")
    attempts = refusing(["relu_1"], monkeypatch)
    result = build_lenient(run_cli, "conv.onnx", "onnx")
    assert result.exit_code == 0, result.stderr
    assert attempts == [[], ["relu_1"]]
    manifest = json.loads((tmp_path / "bundles/conv-onnx/manifest.json").read_text())
    assert manifest["model"]["float_after_load_failure"] == ["relu_1"]


def test_retries_are_bounded(run_cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    named_conv(tmp_path / "conv.onnx")
    rgb_set(tmp_path / "calib", "NCHW")
    names = ["conv_0", "relu_1", "globalaveragepool_2", "flatten_3", "gemm_4"]
    attempts = refusing(names, monkeypatch)
    result = build_lenient(run_cli, "conv.onnx", "onnx")
    assert_one_line_error(result, EXIT_CONVERSION, "cannot load", "in node (flatten_3)")
    assert len(attempts) == onnx_backend.LOAD_RETRIES + 1


def test_a_node_the_model_does_not_have_is_not_retried() -> None:
    assert onnx_backend._float_node("x_QuantizeLinear", {"conv_0"}) is None
    assert onnx_backend._float_node("conv_0", {"conv_0"}) == "conv_0"
    error = onnx_backend._NAMED_NODE.search(ORT_ERROR.format(node="relu_1"))
    assert error is not None and "relu_1" in error.groups()
