"""Elementwise binary (with broadcasting) and unary kernels of the Core ML emulator against
NumPy/SciPy references in float64 (FP32 programs)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import erf

from tests.unit.coreml._mil import IOS15, IOS17, assert_close, mb, randn, rng, run1

# x (2, 1, 4) against y (3, 1): broadcast to (2, 3, 4)
BX = randn(2, 1, 4, seed=1, scale=3.0)
BY = randn(3, 1, seed=2, scale=2.0)

BINARY = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "real_div": np.true_divide,
    "maximum": np.maximum,
    "minimum": np.minimum,
}


@pytest.mark.parametrize("swap", [False, True], ids=["x-big", "y-big"])
@pytest.mark.parametrize("op", BINARY, ids=BINARY)
def test_binary_broadcasting(op: str, swap: bool) -> None:
    x, y = (BY, BX) if swap else (BX, BY)
    out = run1(lambda x, y: getattr(mb, op)(x=x, y=y), [x, y], expect_ops=[op])
    expected = BINARY[op](x.astype(np.float64), y.astype(np.float64))
    assert_close(out, expected, rtol=1e-5)


def test_binary_with_constant_scalar_and_vector() -> None:
    x = randn(2, 3, 4, seed=3)
    vector = np.array([1.0, -2.0, 0.5, 4.0], np.float32)

    def body(x):
        return mb.sub(x=mb.mul(x=x, y=vector), y=np.float32(1.5))

    out = run1(body, [x], expect_ops=["mul", "sub"])
    assert_close(out, x.astype(np.float64) * vector - 1.5, rtol=1e-5)


# floor_div rounds toward -inf; mod follows the sign of the divisor (Python's %), so
# both differ from C's truncation for mixed signs
FX = np.array([7.0, -7.0, 7.0, -7.0, 7.5, -7.5, 0.0, 6.0, -6.0, 1e-3], np.float32)
FY = np.array([2.0, 2.0, -2.0, -2.0, 2.0, -0.5, 3.0, 3.0, 3.0, -4.0], np.float32)


def test_floor_div_float() -> None:
    out = run1(lambda x, y: mb.floor_div(x=x, y=y), [FX, FY], expect_ops=["floor_div"])
    assert_close(out, np.floor(FX.astype(np.float64) / FY), rtol=1e-5)


def test_mod_float_follows_the_sign_of_the_divisor() -> None:
    out = run1(lambda x, y: mb.mod(x=x, y=y), [FX, FY], expect_ops=["mod"])
    x64, y64 = FX.astype(np.float64), FY.astype(np.float64)
    assert_close(out, x64 - np.floor(x64 / y64) * y64, rtol=1e-5)


@pytest.mark.parametrize("op", ["floor_div", "mod"])
def test_integer_floor_div_and_mod(op: str) -> None:
    x = np.array([7, -7, 7, -7, 0, 9, -1], np.int32)
    y = np.array([2, 2, -2, -2, 5, 3, 4], np.int32)
    out = run1(lambda x, y: getattr(mb, op)(x=x, y=y), [x, y], expect_ops=[op])
    # Python's int // and % (floor semantics), element by element
    pairs = zip(x.tolist(), y.tolist(), strict=True)
    expected = [a // b if op == "floor_div" else a % b for a, b in pairs]
    assert out.dtype == np.int32
    assert out.tolist() == expected


def test_integer_add_mul_broadcast() -> None:
    x = np.arange(-6, 6, dtype=np.int32).reshape(3, 4)
    y = np.array([3, -1, 0, 7], np.int32)
    out = run1(lambda x, y: mb.add(x=mb.mul(x=x, y=y), y=y), [x, y])
    assert out.dtype == np.int32
    assert out.tolist() == (x.astype(np.int64) * y + y).tolist()


def test_pow() -> None:
    base = np.abs(randn(3, 4, seed=4)) + 0.1
    exponent = randn(1, 4, seed=5)
    out = run1(lambda x, y: mb.pow(x=x, y=y), [base, exponent], expect_ops=["pow"])
    assert_close(out, np.power(base.astype(np.float64), exponent), rtol=1e-4)  # exp/log


def test_pow_negative_base_integer_exponent() -> None:
    base = np.array([-2.0, -3.0, -0.5, 2.0], np.float32)
    out = run1(lambda x: mb.pow(x=x, y=np.float32(3.0)), [base], expect_ops=["pow"])
    assert_close(out, base.astype(np.float64) ** 3, rtol=1e-5)


COMPARISONS = {
    "equal": np.equal,
    "not_equal": np.not_equal,
    "greater": np.greater,
    "greater_equal": np.greater_equal,
    "less": np.less,
    "less_equal": np.less_equal,
}


@pytest.mark.parametrize("op", COMPARISONS, ids=COMPARISONS)
def test_comparison_broadcasting_with_ties(op: str) -> None:
    # integer-valued floats: many exact ties, where the strict and non-strict forms differ
    x = rng(6).integers(-2, 3, size=(2, 3, 4)).astype(np.float32)
    y = rng(7).integers(-2, 3, size=(3, 1)).astype(np.float32)

    def body(x, y):
        return mb.cast(x=getattr(mb, op)(x=x, y=y), dtype="fp32")  # bool out as 0/1

    out = run1(body, [x, y], expect_ops=[op])
    assert out.tolist() == COMPARISONS[op](x, y).astype(np.float32).tolist()


LOGICAL = {
    "logical_and": np.logical_and,
    "logical_or": np.logical_or,
    "logical_xor": np.logical_xor,
}


@pytest.mark.parametrize("op", [*LOGICAL, "logical_not"])
def test_logical(op: str) -> None:
    x = randn(3, 4, seed=8)
    y = randn(1, 4, seed=9)

    def body(x, y):
        a, b = mb.greater(x=x, y=np.float32(0.0)), mb.less(x=y, y=np.float32(0.3))
        result = mb.logical_not(x=a) if op == "logical_not" else getattr(mb, op)(x=a, y=b)
        return mb.cast(x=result, dtype="fp32")

    out = run1(body, [x, y], expect_ops=[op])
    a, b = x > 0, y < 0.3
    expected = np.logical_not(a) if op == "logical_not" else LOGICAL[op](a, b)
    assert out.tolist() == expected.astype(np.float32).tolist()


POSITIVE = (np.abs(randn(3, 5, seed=10, scale=3.0)) + 0.05).astype(np.float32)
SIGNED = np.concatenate([[0.0, -0.0, 1.0, -1.0, 0.5, -0.5], randn(9, seed=11, scale=3.0)])
SIGNED = SIGNED.astype(np.float32).reshape(3, 5)
UNIT = np.linspace(-0.95, 0.95, 15, dtype=np.float32).reshape(3, 5)

# op -> (input, kwargs, float64 reference, rtol)
UNARY = {
    "abs": (SIGNED, {}, np.abs, 1e-5),
    "exp": (SIGNED, {}, np.exp, 1e-4),
    "exp2": (SIGNED, {}, np.exp2, 1e-4),
    "log": (POSITIVE, {}, lambda x: np.log(x + 1e-45), 1e-4),
    "log-epsilon": (POSITIVE, {"epsilon": 0.5}, lambda x: np.log(x + 0.5), 1e-4),
    "sqrt": (POSITIVE, {}, np.sqrt, 1e-5),
    "rsqrt": (POSITIVE, {}, lambda x: 1 / np.sqrt(x + 1e-12), 1e-5),
    "rsqrt-epsilon": (POSITIVE, {"epsilon": 0.25}, lambda x: 1 / np.sqrt(x + 0.25), 1e-5),
    "inverse": (POSITIVE, {}, lambda x: 1 / (x + 1e-4), 1e-5),
    "inverse-epsilon": (SIGNED + 10, {"epsilon": 0.5}, lambda x: 1 / (x + 0.5), 1e-5),
    "square": (SIGNED, {}, np.square, 1e-5),
    "floor": (SIGNED, {}, np.floor, 1e-5),
    "ceil": (SIGNED, {}, np.ceil, 1e-5),
    "sign": (SIGNED, {}, np.sign, 1e-5),
    "erf": (SIGNED, {}, erf, 1e-4),
    "sin": (SIGNED, {}, np.sin, 1e-4),
    "cos": (SIGNED, {}, np.cos, 1e-4),
    "tan": (UNIT, {}, np.tan, 1e-4),
    "tanh": (SIGNED, {}, np.tanh, 1e-4),
    "sinh": (SIGNED, {}, np.sinh, 1e-4),
    "cosh": (SIGNED, {}, np.cosh, 1e-4),
    "asin": (UNIT, {}, np.arcsin, 1e-4),
    "acos": (UNIT, {}, np.arccos, 1e-4),
    "atan": (SIGNED, {}, np.arctan, 1e-4),
    "atanh": (UNIT, {}, np.arctanh, 1e-4),
    "threshold": (SIGNED, {"alpha": 0.5}, lambda x: np.maximum(x, 0.5), 1e-5),
}


@pytest.mark.parametrize(("name", "case"), UNARY.items(), ids=UNARY.keys())
def test_unary(name: str, case: tuple) -> None:
    x, kwargs, reference, rtol = case
    op = name.split("-", 1)[0]
    out = run1(lambda x: getattr(mb, op)(x=x, **kwargs), [x], expect_ops=[op])
    assert_close(out, reference(x.astype(np.float64)), rtol=rtol)


def test_erf_accuracy_over_a_dense_range() -> None:
    """The emulator's erf (a rational approximation) stays within float32 resolution."""
    x = np.linspace(-6, 6, 4001, dtype=np.float32)
    out = run1(lambda x: mb.erf(x=x), [x], expect_ops=["erf"])
    np.testing.assert_allclose(out, erf(x.astype(np.float64)), rtol=0, atol=3e-7)  # absolute


@pytest.mark.parametrize("target", [IOS15, IOS17], ids=["iOS15", "iOS17"])
def test_round_half_to_even(target: object) -> None:
    """MIL round: "0.5 is rounded to 0" (coremltools' definition; value inference np.round):
    ties go to the even neighbour."""
    x = np.array([0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 3.5, 0.49999997, 2.6, -2.6], np.float32)
    out = run1(lambda x: mb.round(x=x), [x], target=target, expect_ops=["round"])
    assert out.tolist() == [0.0, -0.0, 2.0, -2.0, 2.0, -2.0, 4.0, 0.0, 3.0, -3.0]


def test_abs_and_square_of_int32() -> None:
    x = np.array([-3, 0, 5, -2147483647], np.int32)
    out = run1(lambda x: mb.abs(x=x), [x], expect_ops=["abs"])
    assert out.dtype == np.int32
    assert out.tolist() == [3, 0, 5, 2147483647]
