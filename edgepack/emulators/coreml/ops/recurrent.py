"""Recurrent layers: ``lstm``, ``gru`` and ``rnn`` (iOS15 signatures; iOS17 adds fp16, iOS18
adds ``reset_after`` and ``input_bias`` to ``gru``).

Semantics from coremltools' op definitions and the references its op tests hold Core ML to
(``ops/tests/iOS14/test_recurrent.py`` and ``iOS18/test_recurrent.py``):

- ``x`` is ``(seq, batch, input)``; weights are ``(gates * H, input)`` and ``(gates * H, H)``;
  gate order ``[input, forget, output, cell]`` for ``lstm``, ``[reset, output, update]`` for
  ``gru``; ``bias`` is the sum of the input and hidden biases.
- ``direction="reverse"`` runs over the sequence from its end and emits the states in the order
  it computed them; ``"bidirectional"`` (``lstm`` only) concatenates a forward and a backward
  pass on the hidden axis, the backward states aligned with the input steps they read, as
  PyTorch does.
- ``output_sequence=False`` keeps the last computed state, as a sequence of one (for
  ``bidirectional``: each direction's final state).
- ``lstm``: peepholes ``[input, forget, output]`` see the previous cell state for the input and
  forget gates and the new one for the output gate; ``clip`` clips the cell state.
- ``gru``: the candidate reads ``W_ho (r * h)`` (reset before the matmul), or with
  ``reset_after`` ``r * (W_ho h + b_ho)`` with ``input_bias`` as the input-side bias (PyTorch's
  GRU).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Activation = Callable[[np.ndarray], np.ndarray]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def _hard_sigmoid(x: np.ndarray) -> np.ndarray:
    return np.clip(0.2 * x + 0.5, 0.0, 1.0)


# Every activation with MIL's default parameters: scaled_tanh is tanh (alpha = beta = 1).
_ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
    "scaled_tanh": np.tanh,
    "hard_sigmoid": _hard_sigmoid,
    "sigmoid_hard": _hard_sigmoid,
    "relu": lambda x: np.maximum(x, 0.0),
    "linear": lambda x: x,
}


def _activation(name: str) -> Activation:
    try:
        return _ACTIVATIONS[str(name).lower()]
    except KeyError:
        raise ValueError(f"unknown recurrent activation {name!r}") from None


def _input_projection(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """``W x_t + b`` for every step at once: (seq, batch, gates * H)."""
    projected = np.matmul(x.astype(np.float32), np.asarray(weight, np.float32).T)
    return projected if bias is None else projected + np.asarray(bias, np.float32)


def _steps(length: int, reverse: bool) -> range:
    return range(length - 1, -1, -1) if reverse else range(length)


def _final(sequence: np.ndarray, output_sequence: bool) -> np.ndarray:
    return sequence if output_sequence else sequence[-1:]


def rnn(
    x: np.ndarray,
    initial_h: np.ndarray,
    weight_ih: np.ndarray,
    weight_hh: np.ndarray,
    bias: np.ndarray | None = None,
    direction: str = "forward",
    output_sequence: bool = False,
    activation: str = "tanh",
) -> tuple[np.ndarray, np.ndarray]:
    """Elman RNN: ``h_t = activation(W_ih x_t + W_hh h_{t-1} + b)``."""
    act = _activation(activation)
    projected = _input_projection(x, weight_ih, bias)
    recurrent = np.asarray(weight_hh, np.float32).T
    h = np.asarray(initial_h, np.float32)
    states = []
    for t in _steps(len(x), direction == "reverse"):
        h = act(projected[t] + h @ recurrent)
        states.append(h)
    return _final(np.stack(states), bool(output_sequence)), h


def gru(
    x: np.ndarray,
    initial_h: np.ndarray,
    weight_ih: np.ndarray,
    weight_hh: np.ndarray,
    bias: np.ndarray | None = None,
    direction: str = "forward",
    output_sequence: bool = False,
    recurrent_activation: str = "sigmoid",
    activation: str = "tanh",
    reset_after: bool = False,
    input_bias: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Gated recurrent unit, gates ``[reset, output, update]``."""
    gate_act, out_act = _activation(recurrent_activation), _activation(activation)
    hidden = np.asarray(weight_hh).shape[1]
    projected = _input_projection(x, weight_ih, input_bias)
    w_hh = np.asarray(weight_hh, np.float32)
    w_gates = np.concatenate([w_hh[:hidden], w_hh[2 * hidden :]]).T  # reset, update
    w_out = w_hh[hidden : 2 * hidden].T
    b = np.zeros(3 * hidden, np.float32) if bias is None else np.asarray(bias, np.float32)
    b_reset, b_out, b_update = b[:hidden], b[hidden : 2 * hidden], b[2 * hidden :]
    h: np.ndarray = np.asarray(initial_h, np.float32)
    states = []
    for t in _steps(len(x), direction == "reverse"):
        step = projected[t]
        gates = h @ w_gates
        r = gate_act(step[:, :hidden] + gates[:, :hidden] + b_reset)
        z = gate_act(step[:, 2 * hidden :] + gates[:, hidden:] + b_update)
        if reset_after:
            candidate = step[:, hidden : 2 * hidden] + r * (h @ w_out + b_out)
        else:
            candidate = step[:, hidden : 2 * hidden] + (r * h) @ w_out + b_out
        h = (1.0 - z) * out_act(candidate) + z * h
        states.append(h)
    return _final(np.stack(states), bool(output_sequence)), h


def lstm(
    x: np.ndarray,
    initial_h: np.ndarray,
    initial_c: np.ndarray,
    weight_ih: np.ndarray,
    weight_hh: np.ndarray,
    bias: np.ndarray | None = None,
    peephole: np.ndarray | None = None,
    weight_ih_back: np.ndarray | None = None,
    weight_hh_back: np.ndarray | None = None,
    bias_back: np.ndarray | None = None,
    peephole_back: np.ndarray | None = None,
    direction: str = "forward",
    output_sequence: bool = False,
    recurrent_activation: str = "sigmoid",
    cell_activation: str = "tanh",
    activation: str = "tanh",
    clip: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Long short-term memory, gates ``[input, forget, output, cell]``; one direction, or both
    concatenated on the hidden axis."""
    acts = (
        _activation(recurrent_activation),
        _activation(cell_activation),
        _activation(activation),
    )
    hidden = np.asarray(weight_hh).shape[1]
    h0 = np.asarray(initial_h, np.float32)
    c0 = np.asarray(initial_c, np.float32)
    if direction != "bidirectional":
        states, h, c = _lstm_pass(
            x, h0, c0, (weight_ih, weight_hh, bias, peephole), acts, clip, direction == "reverse"
        )
        return _final(states, bool(output_sequence)), h, c
    forward, h_f, c_f = _lstm_pass(
        x, h0[:, :hidden], c0[:, :hidden], (weight_ih, weight_hh, bias, peephole), acts, clip
    )
    back_weights = (weight_ih_back, weight_hh_back, bias_back, peephole_back)
    backward, h_b, c_b = _lstm_pass(
        x, h0[:, hidden:], c0[:, hidden:], back_weights, acts, clip, reverse=True
    )
    backward = backward[::-1]  # aligned with the steps it read
    if output_sequence:
        sequence = np.concatenate([forward, backward], axis=-1)
    else:
        sequence = np.concatenate([forward[-1:], backward[:1]], axis=-1)
    return sequence, np.concatenate([h_f, h_b], -1), np.concatenate([c_f, c_b], -1)


def _lstm_pass(
    x: np.ndarray,
    h: np.ndarray,
    c: np.ndarray,
    weights: tuple[Any, Any, Any, Any],
    acts: tuple[Activation, Activation, Activation],
    clip: float | None,
    reverse: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One direction: the states in the order computed, and the final h and c."""
    weight_ih, weight_hh, bias, peephole = weights
    gate_act, cell_act, out_act = acts
    hidden = np.asarray(weight_hh).shape[1]
    projected = _input_projection(x, weight_ih, bias)
    recurrent = np.asarray(weight_hh, np.float32).T
    peep = np.zeros(3 * hidden, np.float32) if peephole is None else np.asarray(peephole)
    p_input, p_forget, p_output = (peep[k * hidden : (k + 1) * hidden] for k in range(3))
    states = []
    for t in _steps(len(x), reverse):
        gates = projected[t] + h @ recurrent
        i = gate_act(gates[:, :hidden] + c * p_input)
        f = gate_act(gates[:, hidden : 2 * hidden] + c * p_forget)
        c = f * c + i * cell_act(gates[:, 3 * hidden :])
        if clip is not None:
            c = np.clip(c, -float(clip), float(clip))
        o = gate_act(gates[:, 2 * hidden : 3 * hidden] + c * p_output)
        h = o * out_act(c)
        states.append(h)
    return np.stack(states), h, c


KERNELS: dict[str, Callable[..., Any]] = {"lstm": lstm, "gru": gru, "rnn": rnn}
