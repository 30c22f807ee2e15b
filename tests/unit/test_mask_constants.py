"""Attention-mask constants are bounded so the softmax is unchanged and int8 ranges hold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgepack.convert.mask_constants import MARGIN, bound_mask_constants


def masked_softmax(path: Path, fill: float, form: str) -> Path:
    """scores[N,4,6] and mask[N,6] -> softmax of the masked scores, by Where or by Add."""
    fill_tensor = numpy_helper.from_array(np.array(fill, np.float32), "fill")
    if form == "where":
        nodes = [
            helper.make_node("Cast", ["mask"], ["keep"], to=TensorProto.BOOL),
            helper.make_node("Unsqueeze", ["keep", "axis"], ["keep3"]),
            helper.make_node("Where", ["keep3", "scores", "fill"], ["masked"]),
        ]
    else:  # scores + (1 - mask) * fill
        nodes = [
            helper.make_node("Cast", ["mask"], ["maskf"], to=TensorProto.FLOAT),
            helper.make_node("Sub", ["one", "maskf"], ["dropped"]),
            helper.make_node("Mul", ["dropped", "fill"], ["bias"]),
            helper.make_node("Unsqueeze", ["bias", "axis"], ["bias3"]),
            helper.make_node("Add", ["scores", "bias3"], ["masked"]),
        ]
    nodes.append(helper.make_node("Softmax", ["masked"], ["weights"], axis=-1))
    graph = helper.make_graph(
        nodes,
        "masked",
        [
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 4, 6]),
            helper.make_tensor_value_info("mask", TensorProto.INT64, ["N", 6]),
        ],
        [helper.make_tensor_value_info("weights", TensorProto.FLOAT, ["N", 4, 6])],
        initializer=[
            fill_tensor,
            numpy_helper.from_array(np.array([1], np.int64), "axis"),
            numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def feeds(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = (np.arange(6)[None, :] < rng.integers(1, 7, (8, 1))).astype(np.int64)
    return {"scores": (rng.normal(size=(8, 4, 6)) * 5).astype(np.float32), "mask": mask}


def run(path: Path, data: dict[str, np.ndarray]) -> np.ndarray:
    return ort.InferenceSession(str(path)).run(None, data)[0]


# (1 - mask) * -inf is NaN where the mask is 1: no exporter adds an infinite fill
CASES = [(f, "where") for f in (-3.4e38, -1e9, -1e4, -np.inf)] + [
    (f, "add") for f in (-3.4e38, -1e9, -1e4)
]


@pytest.mark.parametrize(("fill", "form"), CASES)
def test_bounded_fill_leaves_the_softmax_unchanged(tmp_path: Path, fill: float, form: str) -> None:
    model = masked_softmax(tmp_path / "m.onnx", fill, form)
    before = run(model, feeds(1))
    done = bound_mask_constants(model, feeds(0))
    assert done is not None and done["constants"] == ["fill"]
    # the bound clears the measured logits' spread by the margin, and no more than needed
    assert MARGIN < done["bound"] <= 100.0
    after = run(model, feeds(1))
    np.testing.assert_allclose(after, before, atol=1e-7)
    (value,) = [t for t in onnx.load(str(model)).graph.initializer if t.name == "fill"]
    assert numpy_helper.to_array(value) == -done["bound"]


def test_a_model_without_mask_constants_is_left_alone(tmp_path: Path) -> None:
    model = masked_softmax(tmp_path / "m.onnx", -5.0, "where")
    before = model.read_bytes()
    assert bound_mask_constants(model, feeds(0)) is None
    assert model.read_bytes() == before
