"""The int8 kernel path a CPU's features give (onnxruntime's fused kernels depend on it)."""

from __future__ import annotations

import pytest

from edgepack.hostcpu import cpu_features, int8_instruction_set


@pytest.mark.parametrize(
    ("features", "name"),
    [
        ({"SSE41", "AVX2", "AVX512F", "AVX512BW", "AVX512VNNI"}, "x86-64 AVX-512 VNNI"),
        ({"SSE41", "AVX2", "AVXVNNI"}, "x86-64 AVX-VNNI"),
        ({"SSE41", "AVX2", "AVX512F", "AVX512BW"}, "x86-64 AVX-512 (no VNNI)"),
        ({"SSE41", "AVX2"}, "x86-64 AVX2 (no VNNI)"),  # AMD EPYC Rome, Zen 2
        ({"ASIMD", "ASIMDDP"}, "ARM64 dot-product (SDOT/UDOT)"),
        ({"ASIMD"}, "ARM64 NEON (no dot-product)"),
    ],
)
def test_instruction_set_names(features: set[str], name: str) -> None:
    assert int8_instruction_set(frozenset(features)) == name


def test_this_host_is_named() -> None:
    assert cpu_features()  # NumPy or /proc/cpuinfo says something on every CI host
    assert "no SIMD" not in int8_instruction_set()
