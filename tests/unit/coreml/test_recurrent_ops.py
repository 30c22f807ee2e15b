"""``lstm``, ``gru`` and ``rnn`` in the Core ML emulator, against PyTorch's recurrent layers
(forward, reverse as a flipped input, bidirectional, GRU with the reset after the matmul),
onnxruntime's (peepholes and activations of LSTM, GRU with the reset before the matmul, as
MIL's iOS15 GRU defines it), and a step loop for the cell clip, which neither applies where
Core ML does (on the cell state)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.coreml._mil import IOS15, IOS17, IOS18, assert_close, mb, randn, run

torch = pytest.importorskip("torch")

SEQ, BATCH, FEATURES, HIDDEN = 5, 3, 4, 6


def _ifzo_to_ifoz(array: np.ndarray) -> np.ndarray:
    i, f, z, o = np.split(array, 4)
    return np.concatenate([i, f, o, z]).astype(np.float32)


def _torch_lstm(bidirectional: bool, seed: int) -> tuple[object, dict[str, np.ndarray]]:
    torch.manual_seed(seed)
    layer = torch.nn.LSTM(FEATURES, HIDDEN, bidirectional=bidirectional)
    weights = {k: v.detach().numpy() for k, v in layer.state_dict().items()}
    return layer, weights


def _mil_lstm_weights(weights: dict[str, np.ndarray], suffix: str = "") -> tuple[np.ndarray, ...]:
    return (
        _ifzo_to_ifoz(weights[f"weight_ih_l0{suffix}"]),
        _ifzo_to_ifoz(weights[f"weight_hh_l0{suffix}"]),
        _ifzo_to_ifoz(weights[f"bias_ih_l0{suffix}"] + weights[f"bias_hh_l0{suffix}"]),
    )


@pytest.mark.parametrize("direction", ["forward", "reverse"])
@pytest.mark.parametrize("output_sequence", [True, False])
def test_lstm_against_pytorch(direction: str, output_sequence: bool) -> None:
    layer, weights = _torch_lstm(bidirectional=False, seed=1)
    w_ih, w_hh, bias = _mil_lstm_weights(weights)
    x, h0, c0 = (
        randn(SEQ, BATCH, FEATURES, seed=2),
        randn(BATCH, HIDDEN, seed=3),
        randn(BATCH, HIDDEN, seed=4),
    )
    sequence, h, c = run(
        lambda x, h0, c0: mb.lstm(
            x=x,
            initial_h=h0,
            initial_c=c0,
            weight_ih=w_ih,
            weight_hh=w_hh,
            bias=bias,
            direction=direction,
            output_sequence=output_sequence,
        ),
        [x, h0, c0],
        target=IOS15,
        expect_ops=["lstm"],
    )
    fed = x[::-1].copy() if direction == "reverse" else x
    with torch.no_grad():
        expected, (h_t, c_t) = layer(
            torch.from_numpy(fed), (torch.from_numpy(h0)[None], torch.from_numpy(c0)[None])
        )
    expected = expected.numpy() if output_sequence else expected.numpy()[-1:]
    assert_close(sequence, expected, rtol=1e-5)
    assert_close(h, h_t.numpy()[0], rtol=1e-5)
    assert_close(c, c_t.numpy()[0], rtol=1e-5)


@pytest.mark.parametrize("output_sequence", [True, False])
def test_bidirectional_lstm_against_pytorch(output_sequence: bool) -> None:
    layer, weights = _torch_lstm(bidirectional=True, seed=5)
    forward, backward = _mil_lstm_weights(weights), _mil_lstm_weights(weights, "_reverse")
    x = randn(SEQ, BATCH, FEATURES, seed=6)
    h0, c0 = randn(2, BATCH, HIDDEN, seed=7), randn(2, BATCH, HIDDEN, seed=8)
    sequence, h, c = run(
        lambda x, h, c: mb.lstm(
            x=x,
            initial_h=h,
            initial_c=c,
            weight_ih=forward[0],
            weight_hh=forward[1],
            bias=forward[2],
            weight_ih_back=backward[0],
            weight_hh_back=backward[1],
            bias_back=backward[2],
            direction="bidirectional",
            output_sequence=output_sequence,
        ),
        [x, np.concatenate(list(h0), -1), np.concatenate(list(c0), -1)],
        target=IOS17,
        expect_ops=["lstm"],
    )
    with torch.no_grad():
        expected, (h_t, c_t) = layer(
            torch.from_numpy(x), (torch.from_numpy(h0), torch.from_numpy(c0))
        )
    expected = expected.numpy()
    if not output_sequence:  # each direction's final state
        expected = np.concatenate([expected[-1:, :, :HIDDEN], expected[:1, :, HIDDEN:]], -1)
    assert_close(sequence, expected, rtol=1e-5)
    assert_close(h, np.concatenate(list(h_t.numpy()), -1), rtol=1e-5)
    assert_close(c, np.concatenate(list(c_t.numpy()), -1), rtol=1e-5)


def _ort_recurrent(
    op_type: str,
    x: np.ndarray,
    initializers: dict[str, np.ndarray],
    order: list[str],
    outputs: list[str],
    **attributes: object,
) -> list[np.ndarray]:
    """One ONNX recurrent node with several outputs, run by onnxruntime."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    node = helper.make_node(op_type, order, outputs, **attributes)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs],
        [numpy_helper.from_array(v, k) for k, v in initializers.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 9
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(outputs, {"X": x})


@pytest.mark.parametrize(
    "activations",
    [
        ("sigmoid", "tanh", "tanh"),
        ("hard_sigmoid", "tanh", "relu"),
        ("sigmoid", "relu", "hard_sigmoid"),
        ("sigmoid", "tanh", "linear"),
    ],
)
def test_lstm_peepholes_and_activations_against_onnxruntime(
    activations: tuple[str, str, str],
) -> None:
    x = randn(SEQ, BATCH, FEATURES, seed=9)
    w_ih = randn(4 * HIDDEN, FEATURES, seed=10, scale=0.5)  # MIL gates: i, f, o, z
    w_hh = randn(4 * HIDDEN, HIDDEN, seed=11, scale=0.5)
    bias = randn(4 * HIDDEN, seed=12, scale=0.5)
    peephole = randn(3 * HIDDEN, seed=13)  # i, f, o
    h0, c0 = randn(BATCH, HIDDEN, seed=14), randn(BATCH, HIDDEN, seed=15)
    sequence, h, c = run(
        lambda x, h0, c0: mb.lstm(
            x=x,
            initial_h=h0,
            initial_c=c0,
            weight_ih=w_ih,
            weight_hh=w_hh,
            bias=bias,
            peephole=peephole,
            output_sequence=True,
            recurrent_activation=activations[0],
            cell_activation=activations[1],
            activation=activations[2],
        ),
        [x, h0, c0],
        target=IOS15,
        expect_ops=["lstm"],
    )

    def iofc(array: np.ndarray) -> np.ndarray:  # ONNX gate order
        i, f, o, z = np.split(array, 4)
        return np.concatenate([i, o, f, z])

    p_i, p_f, p_o = np.split(peephole, 3)
    onnx_names = {
        "sigmoid": "Sigmoid",
        "tanh": "Tanh",
        "relu": "Relu",
        "hard_sigmoid": "HardSigmoid",
        "linear": "Affine",
    }
    names = [onnx_names[a] for a in activations]
    # onnxruntime hands the alphas and betas out in order to the activations that take them
    parameters = {"HardSigmoid": (0.2, 0.5), "Affine": (1.0, 0.0)}
    alphas = [parameters[n][0] for n in names if n in parameters]
    betas = [parameters[n][1] for n in names if n in parameters]
    y, y_h, y_c = _ort_recurrent(
        "LSTM",
        x,
        {
            "W": iofc(w_ih)[None],
            "R": iofc(w_hh)[None],
            "B": np.concatenate([iofc(bias), np.zeros_like(bias)])[None],
            "initial_h": h0[None],
            "initial_c": c0[None],
            "P": np.concatenate([p_i, p_o, p_f])[None],
        },
        ["X", "W", "R", "B", "", "initial_h", "initial_c", "P"],
        ["Y", "Y_h", "Y_c"],
        hidden_size=HIDDEN,
        activations=names,
        **({"activation_alpha": alphas, "activation_beta": betas} if alphas else {}),
    )
    assert_close(sequence, y[:, 0], rtol=1e-5)
    assert_close(h, y_h[0], rtol=1e-5)
    assert_close(c, y_c[0], rtol=1e-5)


def _clipped_lstm_reference(
    x: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, clip: float
) -> np.ndarray:
    """The step loop of coremltools' ``test_numpy_numerical``: the cell state is clipped."""
    hidden = w_hh.shape[1]
    h = np.zeros((x.shape[1], hidden))
    c = np.zeros_like(h)
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    for step in x.astype(np.float64):
        i, f, o, z = np.split(step @ w_ih.T + h @ w_hh.T, 4, axis=-1)
        c = np.clip(sigmoid(f) * c + sigmoid(i) * np.tanh(z), -clip, clip)
        h = sigmoid(o) * np.tanh(c)
    return h


@pytest.mark.parametrize("clip", [0.01, 0.2, 50.0])
def test_lstm_clip_bounds_the_cell_state(clip: float) -> None:
    x = randn(SEQ, BATCH, FEATURES, seed=16, scale=3.0)
    w_ih, w_hh = randn(4 * HIDDEN, FEATURES, seed=17), randn(4 * HIDDEN, HIDDEN, seed=18)
    zeros = np.zeros((BATCH, HIDDEN), np.float32)
    _, h, c = run(
        lambda x: mb.lstm(
            x=x,
            initial_h=zeros,
            initial_c=zeros,
            weight_ih=w_ih,
            weight_hh=w_hh,
            clip=np.float32(clip),
        ),
        [x],
        target=IOS15,
        expect_ops=["lstm"],
    )
    assert np.abs(c).max() <= clip * (1 + 1e-6)
    assert_close(h, _clipped_lstm_reference(x, w_ih, w_hh, clip), rtol=1e-5)


def _onnx_gru(x: np.ndarray, mil_weights: tuple[np.ndarray, ...], h0: np.ndarray, reverse: bool):
    """MIL's iOS15 GRU as ONNX's GRU with ``linear_before_reset=0`` (reset before the
    matmul); ONNX aligns a reverse pass with the input steps, MIL emits it in step order."""
    w_ih, w_hh, bias = mil_weights

    def zrh(array: np.ndarray) -> np.ndarray:
        r, o, z = np.split(array, 3)
        return np.concatenate([z, r, o])

    y, y_h = _ort_recurrent(
        "GRU",
        x,
        {
            "W": zrh(w_ih)[None],
            "R": zrh(w_hh)[None],
            "B": np.concatenate([zrh(bias), np.zeros_like(bias)])[None],
            "initial_h": h0[None],
        },
        ["X", "W", "R", "B", "", "initial_h"],
        ["Y", "Y_h"],
        hidden_size=HIDDEN,
        direction="reverse" if reverse else "forward",
    )
    sequence = y[:, 0]
    return (sequence[::-1] if reverse else sequence), y_h[0]


@pytest.mark.parametrize("direction", ["forward", "reverse"])
@pytest.mark.parametrize("target", [IOS15, IOS17, IOS18])
def test_gru_against_onnxruntime(direction: str, target: object) -> None:
    x, h0 = randn(SEQ, BATCH, FEATURES, seed=19), randn(BATCH, HIDDEN, seed=20)
    weights = (
        randn(3 * HIDDEN, FEATURES, seed=21),
        randn(3 * HIDDEN, HIDDEN, seed=22),
        randn(3 * HIDDEN, seed=23),
    )
    sequence, h = run(
        lambda x, h0: mb.gru(
            x=x,
            initial_h=h0,
            weight_ih=weights[0],
            weight_hh=weights[1],
            bias=weights[2],
            direction=direction,
            output_sequence=True,
        ),
        [x, h0],
        target=target,
        expect_ops=["gru"],
    )
    expected, expected_h = _onnx_gru(x, weights, h0, reverse=direction == "reverse")
    assert_close(sequence, expected, rtol=1e-5)
    assert_close(h, expected_h, rtol=1e-5)


def test_gru_reset_after_against_pytorch() -> None:
    """iOS18's ``reset_after`` with ``input_bias`` is PyTorch's GRU (gates r, z, n there;
    r, o, z in MIL)."""
    torch.manual_seed(24)
    layer = torch.nn.GRU(FEATURES, HIDDEN)
    weights = {k: v.detach().numpy() for k, v in layer.state_dict().items()}

    def roz(array: np.ndarray) -> np.ndarray:
        r, z, n = np.split(array, 3)
        return np.concatenate([r, n, z]).astype(np.float32)

    x, h0 = randn(SEQ, BATCH, FEATURES, seed=25), randn(BATCH, HIDDEN, seed=26)
    sequence, h = run(
        lambda x, h0: mb.gru(
            x=x,
            initial_h=h0,
            weight_ih=roz(weights["weight_ih_l0"]),
            weight_hh=roz(weights["weight_hh_l0"]),
            input_bias=roz(weights["bias_ih_l0"]),
            bias=roz(weights["bias_hh_l0"]),
            reset_after=True,
            output_sequence=True,
        ),
        [x, h0],
        target=IOS18,
        expect_ops=["gru"],
    )
    with torch.no_grad():
        expected, h_t = layer(torch.from_numpy(x), torch.from_numpy(h0)[None])
    assert_close(sequence, expected.numpy(), rtol=1e-5)
    assert_close(h, h_t.numpy()[0], rtol=1e-5)


@pytest.mark.parametrize("direction", ["forward", "reverse"])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_rnn_against_pytorch(direction: str, activation: str) -> None:
    torch.manual_seed(27)
    layer = torch.nn.RNN(FEATURES, HIDDEN, nonlinearity=activation)
    weights = {k: v.detach().numpy() for k, v in layer.state_dict().items()}
    x, h0 = randn(SEQ, BATCH, FEATURES, seed=28), randn(BATCH, HIDDEN, seed=29)
    sequence, h = run(
        lambda x, h0: mb.rnn(
            x=x,
            initial_h=h0,
            weight_ih=weights["weight_ih_l0"],
            weight_hh=weights["weight_hh_l0"],
            bias=weights["bias_ih_l0"] + weights["bias_hh_l0"],
            direction=direction,
            output_sequence=False,
            activation=activation,
        ),
        [x, h0],
        target=IOS15,
        expect_ops=["rnn"],
    )
    fed = x[::-1].copy() if direction == "reverse" else x
    with torch.no_grad():
        expected, h_t = layer(torch.from_numpy(fed), torch.from_numpy(h0)[None])
    assert sequence.shape == (1, BATCH, HIDDEN)
    assert_close(sequence, expected.numpy()[-1:], rtol=1e-5)
    assert_close(h, h_t.numpy()[0], rtol=1e-5)


def test_unknown_activation_is_refused_by_name() -> None:
    from edgepack.emulators.coreml.ops.recurrent import rnn

    with pytest.raises(ValueError, match="softsign"):
        rnn(
            x=np.zeros((1, 1, 1), np.float32),
            initial_h=np.zeros((1, 1), np.float32),
            weight_ih=np.ones((1, 1), np.float32),
            weight_hh=np.ones((1, 1), np.float32),
            activation="softsign",
        )
