"""Keras -> ONNX gives the same file however many conversions the process ran before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from edgepack.convert.tf_to_onnx import tensorflow_to_onnx
from edgepack.frontends import load_source
from tests.conftest import tiny_keras_model


def test_conversion_does_not_depend_on_earlier_conversions(tmp_path: Path) -> None:
    source = load_source(tiny_keras_model(tmp_path / "tiny.keras"))
    batch = {"image": np.zeros((2, 6, 6, 1), np.float32)}
    files = [tmp_path / f"run{k}.onnx" for k in range(3)]
    for target in files:  # tf2onnx's counters advance with every conversion
        tensorflow_to_onnx(source, batch, 13, target)
    assert files[0].read_bytes() == files[1].read_bytes() == files[2].read_bytes()
    dims = {
        d.dim_param
        for v in onnx.load(str(files[0])).graph.input
        for d in v.type.tensor_type.shape.dim
        if d.dim_param
    }
    assert dims == {"unk__1"}
