"""Locks, on one POSIX primitive (`flock`): one writer per output folder, and a waiting lock for
shared caches.

`folder_lock`: a run or a bench locks the folder it writes before it writes. The lock is a POSIX
advisory lock on `<folder>/.kptoolkit.lock`, which also holds the holder's process id and host
(a job of a cluster launcher holds it on another machine of a shared file system). The
operating system releases it when the holder exits, SIGKILL included, so a killed run never
leaves a stale lock. A second process asking for a held folder stops at once with a
`FolderBusyError` naming the holder, before it has written anything; a folder of files
kptoolkit did not write is refused (`ForeignFolderError`) before it is touched. `held` says,
without waiting, whether another process holds a folder now.

`exclusive`: several processes (torchrun ranks, two benches) that need the same cached item
(the synthetic data, a detector prior) wait for each other, so that one makes it and the others
reuse it.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

from kptoolkit.errors import KptoolkitError

LOCK_NAME = ".kptoolkit.lock"


class FolderBusyError(KptoolkitError):
    """Another process holds the output folder's lock."""


class ForeignFolderError(KptoolkitError):
    """The output folder holds files that kptoolkit did not write."""


def check_owned(folder: Path, what: str, written_before: Callable[[Path], bool]) -> None:
    """Refuse (ForeignFolderError) a folder that exists, is not empty and is neither marked by
    an earlier kptoolkit lock nor recognised by `written_before` (a folder written before
    folders were locked)."""
    if not folder.is_dir():
        return
    entries = sorted(p.name for p in folder.iterdir())
    if not entries or LOCK_NAME in entries or written_before(folder):
        return
    shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
    raise ForeignFolderError(
        f"{folder} is not empty and not a folder of {what} ({shown}); choose a new or empty "
        "--out (nothing was changed)"
    )


def _holder(handle: int) -> str:
    """'pid 123', or 'pid 123 on node07' when the holder runs on another host."""
    os.lseek(handle, 0, os.SEEK_SET)
    pid, _, host = os.read(handle, 300).decode("ascii", "replace").strip().partition(" ")
    if not pid.isdigit():
        return "another process"
    return f"pid {pid} on {host}" if host and host != socket.gethostname() else f"pid {pid}"


def held(folder: Path) -> bool:
    """Whether another process holds `folder`'s lock now (a run or job still writing there)."""
    path = Path(folder) / LOCK_NAME
    if not path.is_file():
        return False
    handle = os.open(path, os.O_RDWR)
    try:
        if not _lock(handle, wait=False):
            return True
        _unlock(handle)
        return False
    finally:
        os.close(handle)


@contextlib.contextmanager
def folder_lock(
    folder: str | Path,
    what: str = "kptoolkit",
    written_before: Callable[[Path], bool] | None = None,
) -> Iterator[Path]:
    """Hold `folder`'s lock for the block (creating the folder); `what` names the writer in the
    errors, e.g. "a kptoolkit bench". With `written_before`, a folder of other files is refused
    first (`check_owned`)."""
    folder = Path(folder)
    if written_before is not None:
        check_owned(folder, what, written_before)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # no truncation: the pid stays readable
    try:
        if not _lock(handle, wait=False):
            raise FolderBusyError(
                f"{folder} is in use by {what} ({_holder(handle)}); wait for it to finish or "
                "choose another --out (nothing was changed)"
            )
        try:
            os.ftruncate(handle, 0)
            os.write(handle, f"{os.getpid()} {socket.gethostname()}".encode())
            yield folder
        finally:
            _unlock(handle)
    finally:
        os.close(handle)


@contextlib.contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file `lock_path` for the block, waiting while another
    process holds it (several processes, e.g. torchrun ranks, may ask at once)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    handle = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _lock(handle, wait=True)
        try:
            yield
        finally:
            _unlock(handle)
    finally:
        os.close(handle)


def _lock(handle: int, wait: bool) -> bool:
    """Take the exclusive lock of an open file: waiting for it, or False at once when another
    process holds it. Without POSIX locks (not a POSIX system) every call succeeds: one process
    at a time by trust."""
    try:
        import fcntl
    except ImportError:
        return True
    try:
        fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(handle: int) -> None:
    try:
        import fcntl
    except ImportError:
        return
    fcntl.flock(handle, fcntl.LOCK_UN)
