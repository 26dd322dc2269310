"""`train.precision: auto` picks bf16 only where the machine computes it natively (faceage.hardware)."""

from __future__ import annotations

from pathlib import Path

import pytest

from faceage import hardware
from faceage.hardware import cpu_flags, resolve_precision

AVX2_ONLY = "processor\t: 0\nflags\t\t: fpu sse sse2 avx avx2 fma\n\nprocessor\t: 1\nflags\t\t: fpu sse sse2 avx avx2 fma\n"
WITH_BF16 = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_vnni avx512_bf16\n"


def cpuinfo(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    return path


@pytest.fixture
def cpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware, "has_accelerator", lambda: False)


def test_cpu_flags_are_read_from_cpuinfo_and_missing_file_means_none(tmp_path: Path) -> None:
    assert cpu_flags(cpuinfo(tmp_path, WITH_BF16)) == {"fpu", "avx2", "avx512f", "avx512_vnni", "avx512_bf16"}
    assert cpu_flags(tmp_path / "absent") == set()


def test_auto_is_float32_on_a_cpu_without_bf16_instructions(tmp_path: Path, cpu_only: None) -> None:
    assert resolve_precision("auto", cpuinfo(tmp_path, AVX2_ONLY)) == "float32"


@pytest.mark.parametrize("flag", ["avx512_bf16", "amx_bf16"])
def test_auto_is_bf16_on_a_cpu_with_native_bf16(tmp_path: Path, cpu_only: None, flag: str) -> None:
    assert resolve_precision("auto", cpuinfo(tmp_path, f"flags\t: avx2 {flag}\n")) == "mixed_bfloat16"


def test_auto_is_bf16_on_an_accelerator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware, "has_accelerator", lambda: True)
    assert resolve_precision("auto", cpuinfo(tmp_path, AVX2_ONLY)) == "mixed_bfloat16"


@pytest.mark.parametrize("explicit", ["float32", "mixed_bfloat16"])
def test_an_explicit_precision_is_kept_whatever_the_machine(tmp_path: Path, explicit: str) -> None:
    assert resolve_precision(explicit, cpuinfo(tmp_path, AVX2_ONLY)) == explicit
    assert resolve_precision(explicit, cpuinfo(tmp_path, WITH_BF16)) == explicit

