"""Models whose batch axis is fixed are fed in slices of their batch size."""

from __future__ import annotations

import numpy as np
import pytest

from edgepack.frontends.base import TensorSpec, fixed_batch, run_in_batches


def recording_model(batch: int, calls: list[int]):
    """A model that refuses any other batch size and returns 2 * x and the slice's sum."""

    def run(feeds):
        (x,) = feeds.values()
        if len(x) != batch:
            raise ValueError(f"got batch {len(x)}, expected {batch}")
        calls.append(len(x))
        return {"double": 2 * x, "total": np.asarray([x.sum()])}

    return run


@pytest.mark.parametrize(("batch", "total", "slices"), [(1, 5, 5), (4, 10, 3), (4, 8, 2)])
def test_slices_of_the_fixed_size_give_every_sample_once(batch, total, slices) -> None:
    calls: list[int] = []
    x = np.arange(total * 3, dtype=np.float32).reshape(total, 3)
    out = run_in_batches(recording_model(batch, calls), {"x": x}, batch)
    assert calls == [batch] * slices
    np.testing.assert_array_equal(out["double"], 2 * x)  # padding rows dropped again


def test_a_free_batch_is_fed_at_once() -> None:
    calls: list[int] = []
    x = np.ones((7, 2), np.float32)
    run_in_batches(recording_model(7, calls), {"x": x}, None)
    assert calls == [7]


def test_fixed_batch_is_read_from_every_input() -> None:
    spec = TensorSpec
    assert fixed_batch([spec("a", (1, 3), "float32"), spec("b", (1, 2), "int64")]) == 1
    assert fixed_batch([spec("a", (None, 3), "float32")]) is None
    assert fixed_batch([spec("a", (1, 3), "float32"), spec("b", (None, 2), "int64")]) is None
    assert fixed_batch([spec("a", (), "float32")]) is None


def test_a_bundle_manifest_marks_a_free_batch_with_minus_one() -> None:
    from edgepack.backends.base import TensorInfo

    assert fixed_batch([TensorInfo("x", "x", (-1, 3, 8, 8), "float32")]) is None
    assert fixed_batch([TensorInfo("x", "x", (1, 3, 8, 8), "float32")]) == 1


def test_a_model_that_does_not_run_on_the_samples_is_an_input_error(tmp_path) -> None:
    """ONNX Runtime's broadcast failure on a size the graph does not take (a DBNet fed 18 x 18
    pages) is the user's input, not an internal error: exit 3, naming the shapes."""
    from edgepack.errors import EXIT_INPUT, InputError
    from edgepack.frontends.base import SourceModel

    def runner(feeds):
        raise RuntimeError("Attempting to broadcast an axis by a dimension other than 1. 3 by 4")

    spec = TensorSpec("x", (None, 3, None, None), "float32")
    model = SourceModel(tmp_path / "det.onnx", "onnx", [spec], [spec], runner)
    with pytest.raises(
        InputError, match=r"det.onnx does not run on the samples \(x \[2, 3, 18, 18\]\)"
    ) as caught:
        model.run({"x": np.zeros((2, 3, 18, 18), np.float32)})
    assert caught.value.exit_code == EXIT_INPUT and "3 by 4" in str(caught.value)
