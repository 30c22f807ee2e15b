"""The emulator's fast fp16 rounding equals NumPy's float16 conversion, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from edgepack.emulators.coreml.interpreter import fp16_values


@pytest.mark.parametrize("scale", [1e-8, 1e-5, 1e-3, 1.0, 1e3, 6e4, 1e5])
def test_fp16_values_equal_numpy_float16(scale: float) -> None:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(200_000) * scale).astype(np.float32)
    representable = x.astype(np.float16).astype(np.float32)
    halfway = (representable + np.nextafter(representable, np.inf)) / 2  # ties: to even
    edges = np.array(
        [
            np.inf,
            -np.inf,
            np.nan,
            65504,
            65519.99,
            65520,
            -65520,
            0.0,
            -0.0,
            2.0**-14,
            2.0**-24,
            2.0**-25,
        ],
        np.float32,
    )
    values = np.concatenate([x, halfway.astype(np.float32), edges])
    with np.errstate(over="ignore"):
        expected = values.astype(np.float16).astype(np.float32)
    got = fp16_values(values)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)  # nan == nan for this assert


def test_fp16_values_of_a_strided_view_keep_its_shape() -> None:
    """Convolution plans hand out views with dropped columns; relu outputs are mostly zeros."""
    wide = np.random.default_rng(1).standard_normal((2, 3, 5, 9)).astype(np.float32)
    view = np.maximum(wide, 0)[..., :7]
    got = fp16_values(view)
    assert got.shape == view.shape
    np.testing.assert_array_equal(got, view.astype(np.float16).astype(np.float32))
    assert np.signbit(fp16_values(np.array([-0.0], np.float32)))[0]  # -0 stays -0


@pytest.mark.parametrize(
    "first_bits",
    [0x33800000, 0x38000000, 0x3F800000, 0x477F0000, 0xB8000000],
    ids=["below-2^-24", "fp16-subnormals", "normal-[1,2)", "to-overflow", "negative-subnormals"],
)
def test_fp16_values_bit_exact_over_a_whole_binade(first_bits: int) -> None:
    """Every float32 of one binade (2**23 values), compared as bit patterns (signed zeros,
    ties, the subnormal grid and overflow to inf included)."""
    bits = np.arange(first_bits, first_bits + 0x800000, dtype=np.uint64).astype(np.uint32)
    values = bits.view(np.float32)
    with np.errstate(over="ignore"):
        expected = values.astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(fp16_values(values).view(np.uint32), expected.view(np.uint32))
