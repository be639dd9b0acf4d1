"""What the device a run uses can do: the probes that precision and layout are resolved from.

Each probe is a small module-level function, so that tests can stand in for a machine they are
not running on (an AVX2 CPU without bfloat16, a GPU with or without it) by monkeypatching it.
`describe` gathers them into a `Hardware` record, which runs write next to their results.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
from collections.abc import Iterator
from pathlib import Path

import attrs
import torch


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with `threads` torch intra-op threads (None: leave the count as it is),
    then restore the count. The thread count changes the order of float sums, so a training
    run records it and a resume uses it again."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else os.cpu_count() or 1


@functools.cache
def cpu_model() -> str:
    """The CPU's model name ('AMD EPYC 9R14', ...), from /proc/cpuinfo where there is one (read
    once per process)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_identity(cpuinfo: str | None = None, cache_root: Path | None = None) -> str:
    """What tells two CPUs of one model name apart, whose kernels may round differently:
    'family 25 model 17 stepping 1, L2 1 MiB, L3 32 MiB' (x86 Linux; empty where unknown).
    `cpuinfo` and `cache_root` replace /proc/cpuinfo and /sys/devices/system/cpu/cpu0/cache."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            if fields:
                break  # the first processor's block is enough
            continue
        fields.setdefault(key.strip(), value.strip())
    named = [
        f"{name} {fields[key]}"
        for name, key in (("family", "cpu family"), ("model", "model"), ("stepping", "stepping"))
        if key in fields
    ]
    parts = [" ".join(named)] if named else []
    root = cache_root or Path("/sys/devices/system/cpu/cpu0/cache")
    caches: dict[str, str] = {}
    for index in sorted(root.glob("index*")) if root.is_dir() else []:
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()
        except OSError:
            continue
        if kind != "Instruction":
            caches[f"L{level}"] = _cache_size(size)
    parts += [f"{level} {size}" for level, size in sorted(caches.items()) if level != "L1"]
    return ", ".join(parts)


def _cache_size(text: str) -> str:
    """sysfs's '1024K' as '1 MiB', '48K' as '48 KiB'."""
    if text.endswith("K") and text[:-1].isdigit():
        kib = int(text[:-1])
        return f"{kib // 1024} MiB" if kib % 1024 == 0 else f"{kib} KiB"
    return text


def cpu_capability() -> str:
    """The vector instructions torch's CPU kernels dispatch to ('AVX2', 'AVX512', ...)."""
    return str(torch.backends.cpu.get_cpu_capability())


def cpu_native_bf16() -> bool:
    """Whether oneDNN runs bfloat16 natively on this CPU (AVX-512 BF16 or AMX); where it does
    not, bfloat16 convolutions are emulated and several times slower than float32."""
    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(probe()) if probe is not None else False
    except RuntimeError:  # a build without oneDNN
        return False


def cuda_name(device: torch.device) -> str:
    """The GPU's name."""
    return torch.cuda.get_device_name(device)


def cuda_capability(device: torch.device) -> str:
    """The GPU's compute capability as 'sm_XY'."""
    major, minor = torch.cuda.get_device_capability(device)
    return f"sm_{major}{minor}"


def cuda_native_bf16(device: torch.device) -> bool:
    """Whether the GPU has bfloat16 arithmetic (compute capability 8.0 and up), not emulation:
    `torch.cuda.is_bf16_supported()` alone also answers True where bfloat16 is emulated."""
    with torch.cuda.device(device):
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))


@attrs.frozen
class Hardware:
    """One device as a run found it: what precision and layout are resolved from, and what a
    reader of its results needs to repeat them."""

    device: str  # "cpu", "cuda:0", ...
    processor: str  # the CPU's model, or the GPU's name
    capability: str  # torch's CPU dispatch level ('AVX2', 'AVX512') or the GPU's 'sm_XY'
    native_bf16: bool
    torch: str
    threads: int  # torch's intra-op threads
    cores: int | None = None

    @property
    def device_type(self) -> str:
        """'cpu', 'cuda', ..."""
        return torch.device(self.device).type

    def summary(self) -> str:
        """'AMD EPYC (AVX2, no native bfloat16), 2 threads, torch 2.14.1'."""
        bf16 = "native bfloat16" if self.native_bf16 else "no native bfloat16"
        return (
            f"{self.processor} ({self.capability}, {bf16}), {self.threads} threads, "
            f"torch {self.torch}"
        )


def describe(device: torch.device | str = "cpu") -> Hardware:
    """The `Hardware` record of `device` (the CPU's for any device that is not CUDA)."""
    device = torch.device(device)
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        processor, capability = cuda_name(device), cuda_capability(device)
        native = cuda_native_bf16(device)
    else:
        processor, capability, native = cpu_model(), cpu_capability(), cpu_native_bf16()
    return Hardware(
        device=str(device),
        processor=processor,
        capability=capability,
        native_bf16=native,
        torch=str(torch.__version__),
        threads=torch.get_num_threads(),
        cores=os.cpu_count(),
    )
