"""Naming, deduplication and ranking of per-layer drift (pure NumPy, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from edgepack.drift.layers import TensorPair, layer_report, source_layer, stack_samples

KERAS = ["conv2d", "conv2d_1", "pool", "dense", "dropout"]


@pytest.mark.parametrize(
    ("tensor", "expected"),
    [
        ("model_1/conv2d_1/Relu;model_1/conv2d_1/BiasAdd", "conv2d"),  # TF scope adds _1
        ("model_1/conv2d_1_1/Relu;model_1/conv2d_1_1/BiasAdd", "conv2d_1"),
        ("model_1_conv2d_1_1_Relu_cast_fp16", "conv2d_1"),  # Core ML var names
        ("model_1_conv2d_1_BiasAdd", "conv2d"),
        ("model_1/pool_1/MaxPool2d:0", "pool"),
        ("model_1/dense_1/MatMul", "dense"),
        ("Transpose__2:0", None),
        ("densely/other", None),  # a layer name must be a whole component
    ],
)
def test_source_layer_of_a_tensor_name(tensor: str, expected: str | None) -> None:
    assert source_layer(tensor, KERAS) == expected


def test_exact_tensor_map_wins() -> None:
    onnx_nodes = {"conv_out": "Conv_0", "relu_out": "Relu_1"}
    assert source_layer("relu_out", ["Conv_0", "Relu_1"], onnx_nodes) == "Relu_1"
    assert source_layer("elsewhere", ["Conv_0"], onnx_nodes) is None


def _pair(name: str, order: int, noise: float, seed: int = 0) -> TensorPair:
    rng = np.random.default_rng(seed)
    reference = rng.standard_normal((8, 4, 3)).astype(np.float32)
    return TensorPair(name, reference, reference + noise * rng.standard_normal((8, 4, 3)), order)


def test_report_keeps_each_layers_last_tensor_ranks_worst_first_and_lists_unmatched() -> None:
    pairs = [
        _pair("model_1/conv2d_1/BiasAdd", 0, 0.5),  # replaced by the same layer's later tensor
        _pair("model_1/conv2d_1/Relu;model_1/conv2d_1/BiasAdd", 1, 0.01),
        _pair("model_1/conv2d_1_1/Relu", 2, 0.1),
        _pair("model_1/dense_1/MatMul", 3, 0.001),
        _pair("Transpose__2:0", 4, 0.2),
    ]
    report = layer_report(pairs, KERAS, None, "test")
    assert [d.layer for d in report.layers] == ["Transpose__2:0", "conv2d_1", "conv2d", "dense"]
    assert report.layers[2].tensor == "model_1/conv2d_1/Relu;model_1/conv2d_1/BiasAdd"
    assert report.layers[2].sqnr_db == pytest.approx(40.0, abs=1.5)  # noise 1% of signal
    assert report.unmatched == ["pool", "dropout"]
    assert report.samples == 8 and report.layers[0].shape == (4, 3)
    assert report.worst is report.layers[0]
    as_dict = report.to_dict()
    assert as_dict["unmatched_layers"] == ["pool", "dropout"]
    assert [entry["layer"] for entry in as_dict["layers"]] == [d.layer for d in report.layers]


def test_stack_samples_keeps_names_present_in_every_sample() -> None:
    per_sample = [{"a": np.ones((1, 2)), "b": np.zeros((1, 3))}, {"a": np.full((1, 2), 2.0)}]
    stacked = stack_samples(per_sample)
    assert list(stacked) == ["a"] and stacked["a"].shape == (2, 2)
    assert stack_samples([]) == {}
