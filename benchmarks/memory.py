"""Peak memory of one call, measured in a fresh process (Linux, glibc).

Measuring in the benchmark process itself is unreliable: memory freed by earlier cases stays in
the allocator's pools and is reused without growing RSS. So each case runs once more in a newly
spawned process, where large blocks are mmapped and unmapped (fixed mmap threshold) and the
kernel's RSS high-water mark is reset just before the call. The figure is the peak RSS increase
of that first call (it includes one-time buffers such as thread pools, a few MiB).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
from collections.abc import Callable
from pathlib import Path
from typing import Any

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")
M_MMAP_THRESHOLD = -3


def _status_kib(field: str) -> int:
    for line in STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in {STATUS}")


def _measure(build: Callable[..., Callable[[], Any]], args: tuple) -> float:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, 128 * 1024)
    except (OSError, AttributeError):
        libc = None
    run = build(*args)
    if libc is not None:
        libc.malloc_trim(0)
    try:
        CLEAR_REFS.write_text("5")  # resets VmHWM to the current RSS
        before = _status_kib("VmRSS")
    except OSError:
        return float("nan")
    run()
    return (_status_kib("VmHWM") - before) / 1024


def peak_mib_in_fresh_process(build: Callable[..., Callable[[], Any]], *args: Any) -> float:
    """Peak RSS increase (MiB) of `build(*args)()` in a new process; `build` must be importable."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_measure, (build, args))
