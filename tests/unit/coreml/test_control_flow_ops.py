"""``cond``, ``while_loop`` and tensor lists in the Core ML emulator: branches, loops whose
variables start as constants (never folded: their blocks read inputs), nested loops, lists
grown by writes past their end, lists as values (a write leaves its input unchanged), and a loop
that never ends stopped with an error. Expected values are computed here in plain Python, and
for the list programs are the ones coremltools' op tests expect."""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.coreml._mil import IOS15, IOS17, build, convert, mb, run

from edgepack.emulators.coreml import CoreMLEmulator  # isort: skip


def _emulator(body, inputs, target=IOS17):  # type: ignore[no-untyped-def]
    emulator = CoreMLEmulator(convert(build(body, inputs, target), target))
    return emulator, dict(zip(emulator.input_names, inputs, strict=True))


@pytest.mark.parametrize("flag", [True, False])
def test_cond_runs_the_branch_the_predicate_picks(flag: bool) -> None:
    b = np.array([2.0, -3.0], np.float32)

    def body(x):  # type: ignore[no-untyped-def]
        pred = mb.less(x=mb.reduce_sum(x=x), y=-0.5)
        return mb.cond(
            pred=pred,
            _true_fn=lambda: (mb.add(x=x, y=1.0), mb.mul(x=x, y=2.0)),
            _false_fn=lambda: (mb.add(x=x, y=-1.0), mb.mul(x=x, y=-2.0)),
        )

    x = b if flag else -b
    first, second = run(body, [x], target=IOS15, expect_ops=["cond"])
    if x.sum() < -0.5:
        np.testing.assert_array_equal(first, x + 1)
        np.testing.assert_array_equal(second, x * 2)
    else:
        np.testing.assert_array_equal(first, x - 1)
        np.testing.assert_array_equal(second, x * -2)


@pytest.mark.parametrize(("base", "power"), [(2.0, 4.0), (3.0, 0.0), (-1.5, 5.0)])
def test_while_loop_from_constant_loop_variables(base: float, power: float) -> None:
    """``base ** power`` by repeated products; the loop variables start as constants."""

    def body(a, b):  # type: ignore[no-untyped-def]
        result, _ = mb.while_loop(
            _cond=lambda res, i: mb.less(x=i, y=b),
            _body=lambda res, i: (mb.mul(x=res, y=a), mb.add(x=i, y=np.float32(1))),
            loop_vars=([1.0], [0.0]),
        )
        return result

    inputs = [np.array([base], np.float32), np.array([power], np.float32)]
    (result,) = run(body, inputs, target=IOS15, expect_ops=["while_loop"])
    np.testing.assert_allclose(result, [base**power], rtol=1e-6)


def test_nested_loops() -> None:
    two, one = np.array([2.0], np.float32), np.array([1.0], np.float32)

    def body(x, y):  # type: ignore[no-untyped-def]
        def inner(i):  # type: ignore[no-untyped-def]
            return mb.while_loop(
                _cond=lambda i: mb.less(x=mb.mul(x=two, y=i), y=mb.add(x=i, y=two)),
                _body=lambda i: mb.add(x=i, y=one),
                loop_vars=(i,),
            )

        return mb.while_loop(
            _cond=lambda i, j: mb.less(x=i, y=j),
            _body=lambda i, j: (mb.add(x=inner(i), y=two), j),
            loop_vars=(x, y),
        )

    def python(i: float, j: float) -> float:
        while i < j:
            while 2 * i < i + 2:
                i += 1
            i += 2
        return i

    for start, end in [(0.0, 10.0), (-3.0, 4.5), (7.0, 1.0)]:
        i, j = run(body, [np.array([start], np.float32), np.array([end], np.float32)])
        assert float(i[0]) == python(start, end) and float(j[0]) == end


def test_list_reads_writes_past_the_end_scatter_and_gather() -> None:
    """coremltools' ``TestList.test_builder_to_backend_smoke``."""

    def body(a, b):  # type: ignore[no-untyped-def]
        ls = mb.make_list(init_length=2, elem_shape=(2,))
        initial = mb.list_read(ls=ls, index=0)
        ls = mb.list_write(ls=ls, index=0, value=a)
        ls = mb.list_write(ls=ls, index=4, value=b)  # grows the list to 5
        ls = mb.list_scatter(
            ls=ls, indices=[2, 1], value=np.array([[-1, -2], [-4, -5]], np.float32)
        )
        return initial, mb.list_read(ls=ls, index=0), mb.list_gather(ls=ls, indices=[4, 2, 3])

    a, b = np.array([1, 3], np.float32), np.array([2, 4], np.float32)
    initial, first, gathered = run(body, [a, b], target=IOS15)
    np.testing.assert_array_equal(initial, [0, 0])
    np.testing.assert_array_equal(first, a)
    np.testing.assert_array_equal(gathered, [[2, 4], [-1, -2], [0, 0]])


@pytest.mark.parametrize("iterations", [0, 1, 3, 7])
def test_loop_appending_to_a_list(iterations: int) -> None:
    """coremltools' ``TestList.test_builder_to_backend_while``: element i is ``update * i``."""

    def body(num_iters, update):  # type: ignore[no-untyped-def]
        def step(i, n, ls, u):  # type: ignore[no-untyped-def]
            value = mb.mul(x=u, y=mb.cast(x=i, dtype="fp32"))
            return mb.add(x=i, y=1), n, mb.list_write(ls=ls, index=i, value=value), u

        ls = mb.make_list(init_length=1, elem_shape=(2,))
        _, _, final, _ = mb.while_loop(
            _cond=lambda i, n, ls, u: mb.less(x=mb.cast(x=i, dtype="fp32"), y=n),
            _body=step,
            loop_vars=(0, num_iters, ls, update),
        )
        length = mb.list_length(ls=final)
        return mb.list_gather(ls=final, indices=mb.range_1d(start=0, end=length, step=1))

    update = np.array([1, 2], np.float32)
    (gathered,) = run(body, [np.array([iterations], np.float32), update], target=IOS15)
    expected = [update * i for i in range(max(iterations, 1))]
    np.testing.assert_array_equal(gathered, expected)


def test_a_write_leaves_the_list_it_wrote_to_unchanged() -> None:
    def body(a):  # type: ignore[no-untyped-def]
        ls = mb.make_list(init_length=1, elem_shape=(2,))
        written = mb.list_write(ls=ls, index=0, value=a)
        return mb.list_read(ls=ls, index=0), mb.list_read(ls=written, index=0)

    before, after = run(body, [np.array([5, 6], np.float32)], target=IOS15)
    np.testing.assert_array_equal(before, [0, 0])
    np.testing.assert_array_equal(after, [5, 6])


def test_a_loop_that_never_ends_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgepack.emulators.coreml import interpreter

    monkeypatch.setattr(interpreter, "MAX_LOOP_ITERATIONS", 1000)

    def body(x):  # type: ignore[no-untyped-def]
        return mb.while_loop(
            _cond=lambda i: mb.greater(x=i, y=np.float32(-1)),
            _body=lambda i: mb.add(x=i, y=np.float32(1)),
            loop_vars=(x,),
        )

    emulator, feeds = _emulator(body, [np.array([0.0], np.float32)])
    with pytest.raises(RuntimeError, match="did not end after 1000 iterations"):
        emulator.predict(feeds)
