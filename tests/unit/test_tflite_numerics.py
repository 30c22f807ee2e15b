"""The TFLite backend's input quantization and output dequantization."""

from __future__ import annotations

import numpy as np

from edgepack.backends.base import QuantParams, TensorInfo
from edgepack.backends.tflite import dequantize, quantize

INFO = TensorInfo("x", "x", (1, 4), "int8", QuantParams(scale=0.5, zero_point=-10))


def test_quantize_rounds_half_away_from_zero_and_saturates() -> None:
    values = np.array([0.25, -0.25, 0.75, -0.75, 1000.0, -1000.0], np.float32)
    # x / 0.5 = 0.5, -0.5, 1.5, -1.5 -> 1, -1, 2, -2 (away from zero), then + zero point
    expected = [-9, -11, -8, -12, 127, -128]
    assert quantize(values, INFO, np.int8).tolist() == expected


def test_uint8_saturates_at_0_and_255() -> None:
    info = TensorInfo("x", "x", (1, 2), "uint8", QuantParams(scale=1 / 255, zero_point=0))
    assert quantize(np.array([-0.5, 2.0], np.float32), info, np.uint8).tolist() == [0, 255]


def test_dequantize_inverts_quantize_within_half_a_step() -> None:
    values = np.linspace(-50, 50, 101, dtype=np.float32)
    restored = dequantize(quantize(values, INFO, np.int8), INFO)
    inside = (values >= (-128 + 10) * 0.5) & (values <= (127 + 10) * 0.5)
    assert np.abs(restored - values)[inside].max() <= 0.25 + 1e-6
