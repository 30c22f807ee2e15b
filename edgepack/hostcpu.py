"""The build host's CPU, as far as int8 kernels care: which instruction set they can use.

onnxruntime's fused int8 kernels (MLAS) pick their code by instruction set at run time: AVX-512
VNNI and AVX-VNNI multiply-accumulate u8 x s8 into 32 bits directly, plain AVX2 goes through
16-bit intermediate sums that can saturate, ARM uses its dot-product instructions (SDOT/UDOT)
or plain NEON. The same bundle can therefore answer differently on two x86 hosts. The features
are read from NumPy's own run-time CPU detection (CPUID on x86, HWCAP or sysctl on ARM), which
also sees what an emulator such as ``qemu-x86_64 -cpu EPYC-Rome`` reports; ``/proc/cpuinfo``
only where NumPy does not say.
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

# The int8 code path a CPU with these features gets, best first: (needed features, name).
_INT8_PATHS: tuple[tuple[frozenset[str], str], ...] = (
    (frozenset({"AVX512F", "AVX512VNNI"}), "x86-64 AVX-512 VNNI"),
    (frozenset({"AVXVNNI"}), "x86-64 AVX-VNNI"),
    (frozenset({"AVX512F", "AVX512BW"}), "x86-64 AVX-512 (no VNNI)"),
    (frozenset({"AVX2"}), "x86-64 AVX2 (no VNNI)"),
    (frozenset({"SSE41"}), "x86-64 SSE4.1"),
    (frozenset({"ASIMDDP"}), "ARM64 dot-product (SDOT/UDOT)"),
    (frozenset({"ASIMD"}), "ARM64 NEON (no dot-product)"),
    (frozenset({"NEON"}), "ARM NEON (no dot-product)"),
)

# /proc/cpuinfo flag -> NumPy's feature name, for the features that decide the int8 path.
_CPUINFO_FLAGS = {
    "avx512f": "AVX512F",
    "avx512bw": "AVX512BW",
    "avx512_vnni": "AVX512VNNI",
    "avx_vnni": "AVXVNNI",
    "avx2": "AVX2",
    "sse4_1": "SSE41",
    "asimddp": "ASIMDDP",
    "asimd": "ASIMD",
}


@functools.cache
def cpu_features() -> frozenset[str]:
    """Instruction-set features of this CPU, in NumPy's naming (``AVX2``, ``AVX512VNNI``,
    ``ASIMDDP``...)."""
    # NumPy asks the CPU itself; /proc/cpuinfo describes the machine, not an emulated CPU.
    return frozenset(_numpy_features() or _cpuinfo_features())


def int8_instruction_set(features: frozenset[str] | None = None) -> str:
    """The name of the int8 kernel path a CPU with ``features`` (default: this one) gets."""
    have = cpu_features() if features is None else features
    for needed, name in _INT8_PATHS:
        if needed <= have:
            return name
    return f"{platform.machine() or 'unknown CPU'} (no SIMD int8 path known)"


def _numpy_features() -> set[str]:
    import importlib

    for module in ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath"):
        try:
            features = importlib.import_module(module).__cpu_features__
        except (ImportError, AttributeError):
            continue
        return {name for name, present in features.items() if present}
    return set()


def _cpuinfo_features() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags = set(value.split())
            return {feature for flag, feature in _CPUINFO_FLAGS.items() if flag in flags}
    return set()
