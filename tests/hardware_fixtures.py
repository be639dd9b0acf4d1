"""Stand-ins for machines the tests are not running on: the hardware probes, monkeypatched."""

from __future__ import annotations

import pytest

from kptoolkit.runtime import hardware

# (torch's CPU capability, oneDNN's native bfloat16) of the CPU kinds the resolver tells apart
AVX2 = ("AVX2", False)  # e.g. AMD Zen 2/3, most Intel before Sapphire Rapids
AVX512_BF16 = ("AVX512", True)  # e.g. AMD Zen 4, Intel Cooper Lake and later


def force_cpu(monkeypatch: pytest.MonkeyPatch, kind: tuple[str, bool]) -> None:
    """Make the probes describe a CPU of `kind` (AVX2 or AVX512_BF16)."""
    capability, native = kind
    monkeypatch.setattr(hardware, "cpu_capability", lambda: capability)
    monkeypatch.setattr(hardware, "cpu_native_bf16", lambda: native)
    monkeypatch.setattr(hardware, "cpu_model", lambda: f"Test CPU ({capability})")


def force_cuda(monkeypatch: pytest.MonkeyPatch, native_bf16: bool) -> None:
    """Make the probes describe a GPU with (an A100's sm_80) or without (a V100's sm_70)
    bfloat16 arithmetic; no GPU is needed."""
    name, capability = ("Test A100", "sm_80") if native_bf16 else ("Test V100", "sm_70")
    monkeypatch.setattr(hardware, "cuda_name", lambda device: name)
    monkeypatch.setattr(hardware, "cuda_capability", lambda device: capability)
    monkeypatch.setattr(hardware, "cuda_native_bf16", lambda device: native_bf16)
