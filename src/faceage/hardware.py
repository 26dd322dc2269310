"""What the machine can compute fast: the training precision `auto` resolves to bf16 only where it pays.

Measured here (BENCHMARKS.md): on a CPU with native bf16 instructions (AVX512_BF16) `mixed_bfloat16` trained
ResNet50 at 64 px 1.2-1.3x faster than float32, but on a CPU without them (AVX2 only) it was 2.3x SLOWER
(bench/precision.py), because every bf16 product is emulated. So `auto` picks bf16 on an accelerator or on a CPU that has the
instructions, and float32 everywhere else.
"""

from __future__ import annotations

from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_flags(cpuinfo: Path = CPUINFO) -> set[str]:
    """The instruction-set flags of the first CPU (Linux); empty where /proc/cpuinfo is not there."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


def has_accelerator() -> bool:
    """True when the Keras backend sees a GPU or TPU."""
    import keras

    try:
        devices = keras.distribution.list_devices()
    except Exception:  # a backend without device listing: assume the CPU
        return False
    return any(not str(device).lower().startswith("cpu") for device in devices)


def resolve_precision(requested: str, cpuinfo: Path = CPUINFO) -> str:
    """The Keras dtype policy to train with: `requested` itself, or for `auto` bf16 where it is native."""
    if requested != "auto":
        return requested
    if has_accelerator() or cpu_flags(cpuinfo) & BF16_CPU_FLAGS:
        return "mixed_bfloat16"
    return "float32"
