"""Small models built in code for integration tests (no downloads)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

UINT8_TFLITE_PROFILE = """\
[profile]
name = "tflite-uint8"
extends = "tflite"
description = "uint8 I/O: no 16-bit activations (ai-edge-quantizer writes int8 I/O)"

[settings]
io_dtype = "uint8"
"""


def uint8_tflite_profile(folder: Path) -> str:
    """A TFLite profile with no 16-bit path, where a mixed-range output keeps one int8 scale
    and its small channels collapse (what the collapse checks are tested on); its file name."""
    (folder / "tflite-uint8.toml").write_text(UINT8_TFLITE_PROFILE)
    return "tflite-uint8.toml"


def savedmodel_with_cumsum(path: Path) -> Path:
    """A SavedModel classifier on 6x6 grey images with a CUMSUM, which has no int8 kernel."""
    return _savedmodel_with_float_op(path, lambda tf, x: tf.math.cumsum(x, axis=1))


def savedmodel_with_floormod(path: Path) -> Path:
    """A SavedModel classifier on 6x6 grey images with a FLOOR_MOD, which has no int8 kernel
    and which Qualcomm's NPU does not take in float."""
    return _savedmodel_with_float_op(path, lambda tf, x: tf.math.floormod(x * 4.0, 1.0))


def _savedmodel_with_float_op(path: Path, op: Callable[[Any, Any], Any]) -> Path:
    """A SavedModel on 6x6 grey images: the flattened pixels through ``op(tf, x)``, then a
    3-class softmax layer."""
    from edgepack._native import captured_output, import_tensorflow

    tf = import_tensorflow()
    weights = np.random.default_rng(0).normal(size=(36, 3)).astype(np.float32) * 0.1

    class Model(tf.Module):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(weights)

        @tf.function(input_signature=[tf.TensorSpec([None, 6, 6, 1], tf.float32, name="image")])
        def serve(self, image: object) -> dict[str, object]:
            x = op(tf, tf.reshape(image, [-1, 36]))
            return {"scores": tf.nn.softmax(tf.matmul(x, self.w))}

    model = Model()
    with captured_output():
        tf.saved_model.save(model, str(path), signatures={"serving_default": model.serve})
    return path


def savedmodel_classifier(path: Path) -> Path:
    """A SavedModel conv classifier on 6x6 grey images (dynamic batch)."""
    from edgepack._native import captured_output, import_tensorflow

    tf = import_tensorflow()
    rng = np.random.default_rng(1)
    kernel = rng.normal(size=(3, 3, 1, 4)).astype(np.float32) * 0.5
    dense = rng.normal(size=(144, 3)).astype(np.float32) * 0.2

    class Model(tf.Module):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.kernel = tf.Variable(kernel)
            self.dense = tf.Variable(dense)

        @tf.function(input_signature=[tf.TensorSpec([None, 6, 6, 1], tf.float32, name="image")])
        def serve(self, image: object) -> dict[str, object]:
            x = tf.nn.relu(tf.nn.conv2d(image, self.kernel, 1, "SAME"))
            return {"scores": tf.nn.softmax(tf.matmul(tf.reshape(x, [-1, 144]), self.dense))}

    model = Model()
    with captured_output():
        tf.saved_model.save(model, str(path), signatures={"serving_default": model.serve})
    return path


def tiny_onnx(path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """An ONNX classifier x[N,1,6,6] -> softmax(flatten(x) @ W + b); returns W and b too."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(2)
    weight = rng.normal(size=(36, 3)).astype(np.float32)
    bias = rng.normal(size=(3,)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["x"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "W", "b"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 6, 6])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 3])],
        initializer=[numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path, weight, bias


def conv_onnx(
    path: Path,
    layout: str = "NCHW",
    pool: str = "GlobalAveragePool",
    opset: int = 13,
    spatial: int | None = 8,
    batch: int | str = "N",
) -> Path:
    """An RGB conv classifier: Conv(3->4) -> Relu -> pool -> Gemm(4->3) -> Softmax.

    ``layout="NHWC"`` puts a Transpose in front (the input is then [N, H, W, 3], as TF exports
    are); ``pool="LpPool"`` uses an op onnx2tf cannot convert; ``spatial=None`` makes the
    height and width dynamic; ``batch=1`` fixes the batch axis, as many exports do.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    nodes = []
    first = "x"
    dim = spatial if spatial is not None else "H"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", ["x"], ["x_nchw"], perm=[0, 3, 1, 2]))
        first = "x_nchw"
        shape = [batch, dim, dim if spatial else "W", 3]
    else:
        shape = [batch, 3, dim, dim if spatial else "W"]
    nodes += [
        helper.make_node("Conv", [first, "K", "B"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
    ]
    if pool == "LpPool":
        nodes.append(
            helper.make_node("LpPool", ["relu"], ["lp"], kernel_shape=[2, 2], p=2, strides=[2, 2])
        )
        nodes.append(helper.make_node("GlobalAveragePool", ["lp"], ["pooled"]))
    else:
        nodes.append(helper.make_node("GlobalAveragePool", ["relu"], ["pooled"]))
    nodes += [
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "W", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    initializers = [
        numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "K"),
        numpy_helper.from_array(rng.normal(size=(4,)).astype(np.float32) * 0.1, "B"),
        numpy_helper.from_array(rng.normal(size=(4, 3)).astype(np.float32), "W"),
        numpy_helper.from_array(np.zeros(3, np.float32), "b"),
    ]
    graph = helper.make_graph(
        nodes,
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [batch, 3])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def residual_onnx(path: Path) -> Path:
    """An RGB [N, 3, 8, 8] classifier with a residual add of two live tensors:
    Conv -> Relu (a), Conv(a) (b), Relu(a + b) -> pool -> Gemm -> Softmax."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)
    nodes = [
        helper.make_node("Conv", ["x", "K1", "B1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["a"]),
        helper.make_node("Conv", ["a", "K2", "B2"], ["b"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["a", "b"], ["sum"]),
        helper.make_node("Relu", ["sum"], ["joined"]),
        helper.make_node("GlobalAveragePool", ["joined"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "W", "bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    weights = {
        "K1": rng.normal(size=(8, 3, 3, 3)),
        "B1": rng.normal(size=(8,)) * 0.1,
        "K2": rng.normal(size=(8, 8, 3, 3)) * 0.2,
        "B2": rng.normal(size=(8,)) * 0.1,
        "W": rng.normal(size=(8, 3)),
        "bias": np.zeros(3),
    }
    graph = helper.make_graph(
        nodes,
        "residual",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 3])],
        initializer=[
            numpy_helper.from_array(value.astype(np.float32), name)
            for name, value in weights.items()
        ],
    )
    return _save_graph(graph, path)


def savedmodel_with_digamma(path: Path) -> Path:
    """A SavedModel classifier on 6x6 grey images with a Digamma, which coremltools cannot
    convert."""
    from edgepack._native import captured_output, import_tensorflow

    tf = import_tensorflow()

    class Model(tf.Module):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(np.ones((36, 3), np.float32) * 0.01)

        @tf.function(input_signature=[tf.TensorSpec([None, 6, 6, 1], tf.float32, name="image")])
        def serve(self, image: object) -> dict[str, object]:
            x = tf.math.digamma(tf.reshape(image, [-1, 36]) + 1.0)
            return {"scores": tf.nn.softmax(tf.matmul(x, self.w))}

    model = Model()
    with captured_output():
        tf.saved_model.save(model, str(path), signatures={"serving_default": model.serve})
    return path


def savedmodel_detector_head(path: Path) -> Path:
    """A SavedModel on 6x6 grey images whose one output concatenates 4 box coordinates (in
    the hundreds) with 3 class scores (sigmoids, 0 to 1): quantized to int8 with one scale, the
    scores collapse while the whole-tensor SQNR stays good."""
    from edgepack._native import captured_output, import_tensorflow

    tf = import_tensorflow()
    rng = np.random.default_rng(3)
    boxes = rng.normal(size=(36, 4)).astype(np.float32)
    scores = rng.normal(size=(36, 3)).astype(np.float32)

    class Model(tf.Module):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.boxes = tf.Variable(boxes)
            self.scores = tf.Variable(scores)

        @tf.function(input_signature=[tf.TensorSpec([None, 6, 6, 1], tf.float32, name="image")])
        def serve(self, image: object) -> dict[str, object]:
            flat = tf.reshape(image, [-1, 36])
            box = 150.0 + 100.0 * tf.matmul(flat, self.boxes)
            score = tf.sigmoid(tf.matmul(flat, self.scores))
            return {"detections": tf.concat([box, score], axis=1)}

    model = Model()
    with captured_output():
        tf.saved_model.save(model, str(path), signatures={"serving_default": model.serve})
    return path


def savedmodel_yolo_head(path: Path, layout: str, classes: int = 3, anchors: int = 64) -> Path:
    """A SavedModel on 8x8 grey images with one YOLOv8-style output: ``channels_first`` is
    ``[N, 4+C, anchors]`` (Ultralytics' export), ``channels_last`` ``[N, anchors, 4+C]``.
    Boxes are cx, cy, w, h in pixels (0 to 640), class scores sigmoids; one int8 scale for the
    whole tensor leaves no step for the scores."""
    from edgepack._native import captured_output, import_tensorflow

    tf = import_tensorflow()
    rng = np.random.default_rng(5)
    boxes = rng.normal(size=(64, anchors * 4)).astype(np.float32) * 0.05
    scores = rng.normal(size=(64, anchors * classes)).astype(np.float32) * 0.05
    width = 4 + classes

    class Model(tf.Module):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.boxes = tf.Variable(boxes)
            self.scores = tf.Variable(scores)

        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.float32, name="image")])
        def serve(self, image: object) -> dict[str, object]:
            flat = tf.reshape(image, [-1, 64]) - 0.5
            box = 640.0 * tf.sigmoid(tf.matmul(flat, self.boxes))
            score = tf.sigmoid(4.0 * tf.matmul(flat, self.scores))
            rows = tf.concat(
                [tf.reshape(box, [-1, 4, anchors]), tf.reshape(score, [-1, classes, anchors])],
                axis=1,
            )  # [N, 4+C, anchors]
            if layout == "channels_last":
                rows = tf.transpose(rows, [0, 2, 1])
            shape = (width, anchors) if layout == "channels_first" else (anchors, width)
            return {"output0": tf.reshape(rows, [-1, *shape])}

    model = Model()
    with captured_output():
        tf.saved_model.save(model, str(path), signatures={"serving_default": model.serve})
    return path


def control_flow_onnx(path: Path, op: str) -> Path:
    """x[N,4] -> y: an ``If`` on the sign of x's sum choosing Relu or Neg, or a ``Loop`` adding
    x to itself three times: the control flow streaming and dynamic exports carry."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    if op == "If":
        branch = [
            helper.make_graph(
                [helper.make_node(kind, ["x"], [f"{kind}_out"])],
                kind,
                [],
                [helper.make_tensor_value_info(f"{kind}_out", TensorProto.FLOAT, ["N", 4])],
            )
            for kind in ("Relu", "Neg")
        ]
        nodes = [
            helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0),
            helper.make_node("Greater", ["total", "zero"], ["positive"]),
            helper.make_node(
                "If", ["positive"], ["y"], then_branch=branch[0], else_branch=branch[1]
            ),
        ]
        constants = [helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])]
    else:
        body = helper.make_graph(
            [
                helper.make_node("Identity", ["cond_in"], ["cond_out"]),
                helper.make_node("Add", ["acc_in", "x"], ["acc_out"]),
            ],
            "body",
            [
                helper.make_tensor_value_info("i", TensorProto.INT64, []),
                helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, ["N", 4]),
            ],
            [
                helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
                helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, ["N", 4]),
            ],
        )
        nodes = [helper.make_node("Loop", ["trips", "keep", "x"], ["y"], body=body)]
        constants = [
            helper.make_tensor("trips", TensorProto.INT64, [], [3]),
            helper.make_tensor("keep", TensorProto.BOOL, [], [True]),
        ]
    graph = helper.make_graph(nodes, op.lower(), [x], [y], initializer=constants)
    return _save_graph(graph, path)


def stateful_gru_onnx(path: Path) -> Path:
    """A streaming GRU step: x[1,N,4] and the previous state h[1,N,8] in, the new state out."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)
    weights = [
        numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), name)
        for name, shape in (("W", (1, 24, 4)), ("R", (1, 24, 8)))
    ]
    graph = helper.make_graph(
        [helper.make_node("GRU", ["x", "W", "R", "", "", "h"], ["seq", "h_next"], hidden_size=8)],
        "gru",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "N", 4]),
            helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, "N", 8]),
        ],
        [helper.make_tensor_value_info("h_next", TensorProto.FLOAT, [1, "N", 8])],
        initializer=weights,
    )
    return _save_graph(graph, path)


def token_classifier_onnx(path: Path, vocab: int = 50, length: int = 12) -> Path:
    """A bag-of-embeddings text classifier with the inputs transformer exports have:
    ``input_ids`` and ``attention_mask``, int64 [N, L]; the mean over L of the masked token
    embeddings, then Gemm and Softmax over 4 classes. (Not a ReduceSum divided by the mask's
    sum: LiteRT's int8 DIV stops when the divisor quantizes to its zero point, and its reference
    kernels' int8 SUM returned -1 for every value here.)"""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(11)
    initializers = [
        numpy_helper.from_array(rng.normal(size=(vocab, 16)).astype(np.float32), "E"),
        numpy_helper.from_array(rng.normal(size=(16, 4)).astype(np.float32), "W"),
        numpy_helper.from_array(np.zeros(4, np.float32), "b"),
        numpy_helper.from_array(np.array([-1], np.int64), "last"),
    ]
    nodes = [
        helper.make_node("Gather", ["E", "input_ids"], ["tokens"]),
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "last"], ["mask3"]),
        helper.make_node("Mul", ["tokens", "mask3"], ["kept"]),
        helper.make_node("ReduceMean", ["kept"], ["mean"], axes=[1], keepdims=0),
        helper.make_node("Gemm", ["mean", "W", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    return _save_token_model(path, "tokens", nodes, initializers, length)


def token_set(folder: Path, count: int, vocab: int = 50, length: int = 12, seed: int = 0) -> Path:
    """``count`` token samples as one .npz (int64 ids and masks; padding after the text)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, length + 1, count)
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype(np.int64)
    ids = rng.integers(1, vocab, (count, length)).astype(np.int64) * mask
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "tokens.npz", input_ids=ids, attention_mask=mask)
    (folder / "calibration.toml").write_text("")
    return folder


def keras_text_transformer(folder: Path, seed: int = 0) -> Path:
    """A two-block Keras text classifier (token and position Embedding, MultiHeadAttention
    with the padding mask, LayerNormalization, GELU feed-forward, masked average pooling),
    trained for a few seconds on synthetic tokens: the class is which of four keywords comes
    first, so it needs attention and positions. Writes ``calib`` (200) and ``eval`` (300)
    sets of int32 ``input_ids`` / ``attention_mask`` with labels beside ``text.keras``."""
    import keras
    from keras import layers, ops

    vocab, length, classes, width = 64, 16, 4, 32
    keras.utils.set_random_seed(seed)

    ids = keras.Input((length,), dtype="int32", name="input_ids")
    mask = keras.Input((length,), dtype="int32", name="attention_mask")
    positions = ops.cumsum(ops.ones_like(ids), axis=1) - 1
    x = layers.Embedding(vocab, width, name="tokens")(ids)
    x = x + layers.Embedding(length, width, name="positions")(positions)
    attend = ops.expand_dims(ops.cast(mask, "bool"), 1)
    for block in range(2):
        attended = layers.MultiHeadAttention(4, width // 4, name=f"attention_{block}")(
            x, x, attention_mask=attend
        )
        x = layers.LayerNormalization(name=f"norm_a{block}")(x + attended)
        hidden = layers.Dense(64, activation="gelu", name=f"ff1_{block}")(x)
        x = layers.LayerNormalization(name=f"norm_f{block}")(
            x + layers.Dense(width, name=f"ff2_{block}")(hidden)
        )
    pooled = layers.GlobalAveragePooling1D(name="pool")(x, mask=ops.cast(mask, "bool"))
    scores = layers.Dense(classes, activation="softmax", name="scores")(pooled)
    model = keras.Model([ids, mask], scores)
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy")
    train_ids, train_mask, train_labels = keyword_tokens(3000, seed, np.int32)
    model.fit([train_ids, train_mask], train_labels, epochs=8, batch_size=64, verbose=0)
    model.save(folder / "text.keras")
    _write_keyword_sets(folder, seed, np.int32)
    return folder / "text.keras"


def attention_onnx(path: Path, fill: float = -3.4e38, vocab: int = 50, length: int = 12) -> Path:
    """One masked self-attention head as transformer exports write it: ``Where(mask, scores,
    fill)`` before Softmax (``fill``: PyTorch's finfo.min; -10000 for older BERT exports),
    then mean pooling, Gemm and Softmax over 4 classes. Inputs ``input_ids`` and
    ``attention_mask``, int64 [N, L]."""
    from onnx import TensorProto, helper, numpy_helper

    width = 16
    rng = np.random.default_rng(13)

    def weight(name: str, *shape: int, scale: float = 1.0) -> Any:
        return numpy_helper.from_array((rng.normal(size=shape) * scale).astype(np.float32), name)

    initializers = [
        weight("E", vocab, width),
        *(weight(n, width, width, scale=width**-0.5) for n in ("Wq", "Wk", "Wv")),
        weight("W", width, 4, scale=2.0),
        numpy_helper.from_array(np.zeros(4, np.float32), "b"),
        numpy_helper.from_array(np.array(width**-0.5, np.float32), "scale"),
        numpy_helper.from_array(np.array(fill, np.float32), "fill"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
    ]
    nodes = [
        helper.make_node("Gather", ["E", "input_ids"], ["tokens"]),
        *(helper.make_node("MatMul", ["tokens", w], [w.lower()]) for w in ("Wq", "Wk", "Wv")),
        helper.make_node("Transpose", ["wk"], ["keys"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["wq", "keys"], ["dots"]),
        helper.make_node("Mul", ["dots", "scale"], ["scores"]),
        helper.make_node("Unsqueeze", ["attention_mask", "axis1"], ["mask3"]),
        helper.make_node("Cast", ["mask3"], ["keep"], to=TensorProto.BOOL),
        helper.make_node("Where", ["keep", "scores", "fill"], ["masked"]),
        helper.make_node("Softmax", ["masked"], ["weights"], axis=-1),
        helper.make_node("MatMul", ["weights", "wv"], ["context"]),
        helper.make_node("ReduceMean", ["context"], ["pooled"], axes=[1], keepdims=0),
        helper.make_node("Gemm", ["pooled", "W", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    return _save_token_model(path, "attention", nodes, initializers, length)


def torch_text_transformer(folder: Path, seed: int = 0) -> Path:
    """The same task as :func:`keras_text_transformer` with PyTorch's
    ``nn.TransformerEncoder`` (two GELU layers, ``src_key_padding_mask``) and masked mean
    pooling, trained for a few seconds on the CPU and exported to ONNX (opset 17, the
    TorchScript exporter); int64 ``calib`` (200) and ``eval`` (300) sets with labels."""
    import torch
    from torch import nn

    vocab, length, classes, width = 64, 16, 4, 32
    torch.manual_seed(seed)

    class TextClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tokens = nn.Embedding(vocab, width)
            self.positions = nn.Embedding(length, width)
            layer = nn.TransformerEncoderLayer(
                width, 4, 64, dropout=0.0, activation="gelu", batch_first=True
            )
            self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
            self.head = nn.Linear(width, classes)

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            x = self.tokens(input_ids) + self.positions.weight[None, : input_ids.shape[1]]
            x = self.encoder(x, src_key_padding_mask=attention_mask == 0)
            kept = attention_mask.unsqueeze(-1).to(x.dtype)
            pooled = (x * kept).sum(1) / kept.sum(1).clamp(min=1.0)
            return torch.softmax(self.head(pooled), -1)

    model = TextClassifier()
    optimizer = torch.optim.Adam(model.parameters(), 2e-3)
    ids, mask, labels = keyword_tokens(3000, seed, np.int64)
    for epoch in range(20):
        order = np.random.default_rng(epoch).permutation(len(ids))
        for start in range(0, len(ids), 64):
            rows = order[start : start + 64]
            probs = model(torch.tensor(ids[rows]), torch.tensor(mask[rows]))
            loss = nn.functional.nll_loss(torch.log(probs + 1e-9), torch.tensor(labels[rows]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    target = folder / "text.onnx"
    example = (torch.tensor(ids[:2]), torch.tensor(mask[:2]))
    dynamic = {name: {0: "N"} for name in ("input_ids", "attention_mask", "probs")}
    torch.onnx.export(
        model, example, str(target), input_names=["input_ids", "attention_mask"],
        output_names=["probs"], dynamic_axes=dynamic, opset_version=17, dynamo=False,
    )  # fmt: skip
    _write_keyword_sets(folder, seed, np.int64)
    return target


def audio_conv1d_onnx(folder: Path, length: int = 4096, count: int = 48) -> Path:
    """An audio classifier as vendors export them: ``x`` [1, L, 1] (samples, channel last)
    transposed to [1, 1, L], a constant-Q-like front end (two strided Conv1D banks with fixed
    kernels, power, log), a Conv1D, mean over time, Gemm, Softmax. onnx2tf reads the 3-D input
    as channels-first by default and writes a model that cannot run. Writes ``calib`` (``count``
    tones as one .npy) beside ``audio.onnx``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def array(name: str, *shape: int, scale: float = 1.0) -> Any:
        return numpy_helper.from_array((rng.normal(size=shape) * scale).astype(np.float32), name)

    nodes = [
        helper.make_node("Transpose", ["x"], ["samples"], perm=[0, 2, 1]),
        helper.make_node("Conv", ["samples", "real"], ["re"], strides=[64]),
        helper.make_node("Conv", ["samples", "imag"], ["im"], strides=[64]),
        helper.make_node("Mul", ["re", "re"], ["re2"]),
        helper.make_node("Mul", ["im", "im"], ["im2"]),
        helper.make_node("Add", ["re2", "im2"], ["power"]),
        helper.make_node("Add", ["power", "eps"], ["floored"]),
        helper.make_node("Log", ["floored"], ["bands"]),
        helper.make_node("Conv", ["bands", "W1", "b1"], ["c1"], pads=[1, 1], kernel_shape=[3]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("ReduceMean", ["r1"], ["pooled"], axes=[2], keepdims=0),
        helper.make_node("Gemm", ["pooled", "W2", "b2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    initializers = [
        array("real", 16, 1, 256, scale=0.05),
        array("imag", 16, 1, 256, scale=0.05),
        numpy_helper.from_array(np.array(1e-6, np.float32), "eps"),
        array("W1", 8, 16, 3, scale=0.3),
        numpy_helper.from_array(np.zeros(8, np.float32), "b1"),
        array("W2", 8, 5),
        numpy_helper.from_array(np.zeros(5, np.float32), "b2"),
    ]
    graph = helper.make_graph(
        nodes,
        "audio",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, length, 1])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 5])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(folder / "audio.onnx"))
    seconds = np.arange(length) / 16000
    tones = [
        np.sin(2 * np.pi * f * seconds + rng.uniform(0, 6)) * rng.uniform(0.1, 1)
        for f in rng.uniform(100, 3000, count)
    ]
    (folder / "calib").mkdir(parents=True, exist_ok=True)
    np.save(folder / "calib" / "audio.npy", np.stack(tones).astype(np.float32)[..., None])
    (folder / "calib" / "calibration.toml").write_text("")
    return folder / "audio.onnx"


def _save_token_model(
    path: Path, name: str, nodes: list[Any], initializers: list[Any], length: int
) -> Path:
    """An opset-13 model of ``nodes`` with int64 ``input_ids`` and ``attention_mask`` [N, L]
    in and ``probs`` [N, 4] out, checked and saved to ``path``."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes,
        name,
        [
            helper.make_tensor_value_info(input_name, TensorProto.INT64, ["N", length])
            for input_name in ("input_ids", "attention_mask")
        ],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 4])],
        initializer=initializers,
    )
    return _save_graph(graph, path)


def keyword_tokens(
    count: int, seed: int, dtype: Any, vocab: int = 64, length: int = 16, classes: int = 4
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic text for the transformers: ids, masks (padding after 6 to ``length`` tokens)
    and labels; the label is which of ``classes`` keywords (ids 1..classes) comes first."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(6, length + 1, count)
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype(dtype)
    ids = rng.integers(classes + 1, vocab, (count, length))
    labels = rng.integers(0, classes, count)
    for row in range(count):
        first = rng.integers(0, lengths[row] - 1)
        ids[row, first] = labels[row] + 1
        ids[row, rng.integers(first + 1, lengths[row])] = rng.integers(1, classes + 1)
    return (ids * mask).astype(dtype), mask, labels


def _write_keyword_sets(folder: Path, seed: int, dtype: Any) -> None:
    """``calib`` (200) and ``eval`` (300) token sets with labels, contracts empty."""
    for name, count, data_seed in (("calib", 200, seed + 2), ("eval", 300, seed + 1)):
        ids, mask, labels = keyword_tokens(count, data_seed, dtype)
        (folder / name).mkdir(parents=True, exist_ok=True)
        np.savez(folder / name / "tokens.npz", input_ids=ids, attention_mask=mask, labels=labels)
        (folder / name / "calibration.toml").write_text("")


def _save_graph(graph: Any, path: Path, opset: int = 13) -> Path:
    """``graph`` as a checked ONNX model (IR 8, the default opset ``opset``) at ``path``."""
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
