"""Worker processes that end with the process that started them.

A bench killed with SIGKILL cannot clean up: its pool workers would be re-parented to PID 1 and
go on training, holding run folders' locks that the next bench then reports as in use. Each
worker calls `die_with_parent` first: on Linux the kernel sends it SIGKILL the moment its parent
ends (`prctl(PR_SET_PDEATHSIG)`); everywhere a daemon thread also checks once a second that the
parent is still its parent and ends the worker when it is not.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable
from multiprocessing.process import BaseProcess

_PR_SET_PDEATHSIG = 1
WATCH_EVERY_S = 1.0


def _kernel_kills_on_parent_death() -> bool:
    """Ask Linux to SIGKILL this process when its parent ends; False where it cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(WATCH_EVERY_S)
    os._exit(1)


def die_with_parent(parent: int) -> None:
    """End this process when process `parent` (its parent, passed from there) ends.

    Call it first thing in a worker: a parent that died before the call is caught too."""
    _kernel_kills_on_parent_death()
    if os.getppid() != parent:  # the parent ended before the request was made
        os._exit(1)
    threading.Thread(target=_watch, args=(parent,), name="die-with-parent", daemon=True).start()


def child_processes() -> set[BaseProcess]:
    """The live `multiprocessing` children of this process."""
    return set(multiprocessing.active_children())


def stop_processes(processes: Iterable[BaseProcess], grace_s: float = 5.0) -> None:
    """Terminate `processes`, then kill those still alive after `grace_s` seconds."""
    processes = list(processes)
    for process in processes:
        process.terminate()
    deadline = time.monotonic() + grace_s
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()
