"""Random number ops in the Core ML emulator: the distributions coremltools defines (checked
on large samples against their exact moments and probabilities), fresh draws on every
prediction without a seed, the same draws with one, shapes given at run time, and no constant
folding of an op whose inputs are all constant."""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.coreml._mil import IOS15, IOS17, build, convert, mb

from edgepack.emulators.coreml import CoreMLEmulator  # isort: skip

DRAWS = 200_000
X = np.zeros(1, np.float32)


def _emulator(body, inputs=(X,), target=IOS17):  # type: ignore[no-untyped-def]
    emulator = CoreMLEmulator(convert(build(body, list(inputs), target), target))
    feeds = dict(zip(emulator.input_names, inputs, strict=True))
    return emulator, feeds


def _draw(body, inputs=(X,), target=IOS17) -> np.ndarray:  # type: ignore[no-untyped-def]
    emulator, feeds = _emulator(body, inputs, target)
    outputs = emulator.predict(feeds)
    return np.asarray(outputs[emulator.output_names[-1]])


def test_uniform_normal_and_bernoulli_have_their_distributions() -> None:
    shape = np.array([DRAWS], np.int32)
    uniform = _draw(lambda x: [x, mb.random_uniform(shape=shape, low=-2.0, high=3.0, seed=1)])
    assert uniform.min() >= -2.0 and uniform.max() < 3.0
    assert abs(uniform.mean() - 0.5) < 0.02 and abs(uniform.var() - 25 / 12) < 0.03
    normal = _draw(lambda x: [x, mb.random_normal(shape=shape, mean=1.5, stddev=2.0, seed=2)])
    assert abs(normal.mean() - 1.5) < 0.02 and abs(normal.std() - 2.0) < 0.02
    assert abs(np.mean(np.abs(normal - 1.5) < 2.0) - 0.6827) < 0.005  # one sigma
    ones = _draw(lambda x: [x, mb.random_bernoulli(shape=shape, prob=0.3, seed=3)])
    assert set(np.unique(ones)) == {0.0, 1.0} and abs(ones.mean() - 0.3) < 0.005


def test_degenerate_parameters_give_constants() -> None:
    shape = np.array([2, 1, 3], np.int32)
    assert np.all(_draw(lambda x: [x, mb.random_uniform(shape=shape, low=1.0, high=1.0)]) == 1)
    assert np.all(_draw(lambda x: [x, mb.random_normal(shape=shape, mean=4.0, stddev=0.0)]) == 4)
    assert np.all(_draw(lambda x: [x, mb.random_bernoulli(shape=shape, prob=1.0)]) == 1)
    assert np.all(_draw(lambda x: [x, mb.random_bernoulli(shape=shape, prob=0.0)]) == 0)


def test_unseeded_ops_draw_anew_on_every_prediction_seeded_ones_repeat() -> None:
    shape = np.array([64], np.int32)
    emulator, feeds = _emulator(
        lambda x: [
            mb.random_uniform(shape=shape, name="fresh"),
            mb.random_uniform(shape=shape, seed=7, name="seeded"),
        ]
    )
    first, second = emulator.predict(feeds), emulator.predict(feeds)
    assert not np.array_equal(first["fresh"], second["fresh"])
    np.testing.assert_array_equal(first["seeded"], second["seeded"])


def test_shape_given_at_run_time() -> None:
    shape = np.array([3, 1, 2], np.int32)
    drawn = _draw(lambda x, s: [x, mb.random_normal(shape=s)], inputs=(X, shape), target=IOS15)
    assert drawn.shape == (3, 1, 2)


@pytest.mark.parametrize("mode", ["logits", "probs"])
def test_categorical_frequencies_match_the_probabilities(mode: str) -> None:
    logits = np.array([[0.2, 1.0, -0.5, 2.0], [0.0, 0.0, 0.0, 3.0]], np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    given = logits if mode == "logits" else probs.astype(np.float32)
    drawn = _draw(
        lambda x: mb.random_categorical(x=x, mode=mode, size=DRAWS, seed=5), inputs=(given,)
    )
    assert drawn.shape == (2, DRAWS)
    for row, expected in zip(drawn, probs, strict=True):
        frequencies = np.bincount(row.astype(int), minlength=4) / DRAWS
        np.testing.assert_allclose(frequencies, expected, atol=0.005)
