"""TFLite Micro helpers: kernels read from the installed runtime, resolver method names,
the exact RELU_0_TO_1 rewrite, and the arena bisection that survives interpreter crashes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from edgepack.backends import tflite_micro as micro

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
pytest.importorskip("tflite_micro", reason="tflite-micro has Linux x86-64 wheels only")


@pytest.fixture(scope="module")
def relu_model() -> bytes:
    """int8 [8] -> RELU -> FULLY_CONNECTED -> [2]: a standalone RELU the converter keeps."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.ReLU(), keras.layers.Dense(2)])

    def samples():  # type: ignore[no-untyped-def]
        rng = np.random.default_rng(0)
        for _ in range(32):
            yield [rng.normal(size=(1, 8)).astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = samples
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    return bytes(converter.convert())


def as_relu_0_to_1(model: bytes, scale: float, zero_point: int) -> bytes:
    """``model`` with its RELU turned into RELU_0_TO_1 and that op's output quantized with
    ``scale`` and ``zero_point``."""
    from ai_edge_litert import schema_py_generated as schema

    from edgepack.backends.tflite_metadata import pack_model

    tflite = schema.ModelT.InitFromPackedBuf(model, 0)
    (relu,) = [i for i, c in enumerate(tflite.operatorCodes) if c.builtinCode == micro.RELU]
    tflite.operatorCodes[relu].builtinCode = micro.RELU_0_TO_1
    tflite.operatorCodes[relu].deprecatedBuiltinCode = 127  # codes above 126 live in builtinCode
    tflite.operatorCodes[relu].version = 1  # the one version LiteRT registers for RELU_0_TO_1
    subgraph = tflite.subgraphs[0]
    (op,) = [o for o in subgraph.operators if o.opcodeIndex == relu]
    quant = subgraph.tensors[op.outputs[0]].quantization
    quant.scale, quant.zeroPoint = [scale], [zero_point]
    return pack_model(tflite)


def litert(model: bytes, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return np.asarray(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))


def test_kernels_come_from_the_installed_runtime() -> None:
    kernels = micro.micro_kernels()
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "SOFTMAX", "HARD_SWISH"} <= kernels
    assert not {"RELU_0_TO_1", "RELU_N1_TO_1", "GELU"} & kernels
    assert len(kernels) > 100  # 128 in tflite-micro 0.dev20261023


@pytest.mark.parametrize(
    ("op", "method"),
    [
        ("CONV_2D", "AddConv2D"),
        ("DEPTHWISE_CONV_2D", "AddDepthwiseConv2D"),
        ("MAX_POOL_2D", "AddMaxPool2D"),
        ("FULLY_CONNECTED", "AddFullyConnected"),
        ("RELU6", "AddRelu6"),
        ("L2_NORMALIZATION", "AddL2Normalization"),
        ("BATCH_TO_SPACE_ND", "AddBatchToSpaceNd"),
        ("SELECT_V2", "AddSelectV2"),
        ("PADV2", "AddPadV2"),
        ("CUMSUM", "AddCumSum"),
        ("UNIDIRECTIONAL_SEQUENCE_LSTM", "AddUnidirectionalSequenceLSTM"),
    ],
)
def test_resolver_methods(op: str, method: str) -> None:
    assert micro.resolver_method(op) == method


def test_relu_0_to_1_becomes_relu_where_exact(relu_model: bytes) -> None:
    # scale 1/255, zero point -128: RELU_0_TO_1's upper clamp -128 + 255 = 127 never binds
    model = as_relu_0_to_1(relu_model, 1 / 255, -128)
    assert "RELU_0_TO_1" in micro.model_ops(model) and micro.missing_kernels(model)
    rewritten, count = micro.relu_0_to_1_as_relu(model)
    assert count == 1 and micro.model_ops(rewritten) == ["FULLY_CONNECTED", "RELU"]
    assert micro.missing_kernels(rewritten) == []
    x = np.random.default_rng(1).integers(-128, 128, (1, 8), dtype=np.int8)
    for row in range(16):
        sample = np.roll(x, row, axis=1)
        assert np.array_equal(litert(model, sample), litert(rewritten, sample))


def test_relu_0_to_1_stays_where_relu_would_differ(relu_model: bytes) -> None:
    # scale 6/255: the upper clamp is -128 + round(42.5) = -85, RELU would not clamp there
    model = as_relu_0_to_1(relu_model, 6 / 255, -128)
    same, count = micro.relu_0_to_1_as_relu(model)
    assert count == 0 and same == model
    assert micro.missing_kernels(model) == ["RELU_0_TO_1"]


def test_the_arena_bisection_survives_interpreter_crashes(
    relu_model: bytes, tmp_path: Path
) -> None:
    model_file = tmp_path / "relu.tflite"
    model_file.write_bytes(relu_model)
    # from 16 bytes up: the bisection passes sizes that crash TFLite Micro's interpreter
    # (a null pointer below a few hundred bytes), each in a child process it restarts
    smallest = micro.smallest_arena(model_file, inputs=1)
    assert smallest % 16 == 0 and 0 < smallest < 8 * 1024
    probe = micro.ArenaProbe(model_file, inputs=1)
    try:
        assert probe.fits(smallest) and not probe.fits(smallest - 16)
        assert not probe.fits(16)  # crashes the child; the probe says "does not fit"
        assert probe.fits(smallest)  # and goes on in a new one
    finally:
        probe.close()


def test_firmware_sources_hold_the_model_bytes(relu_model: bytes) -> None:
    sources = micro.firmware_sources(relu_model, ["FULLY_CONNECTED", "RELU"], 2048)
    body = sources["model_data.cc"]
    values = bytes(int(v[:2], 16) for v in body[body.index("{") + 1 :].split("0x")[1:])
    assert values == relu_model
    assert "alignas(16)" in body
    assert "g_model_arena_size = 2048;" in sources["model_data.h"]
    assert "resolver.AddRelu()" in sources["op_resolver.h"]
    assert "MicroMutableOpResolver<kModelOpCount>" in sources["op_resolver.h"]
