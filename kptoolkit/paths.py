"""Where kptoolkit caches generated data and trained helper models, and how it locks them."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


def cache_dir() -> Path:
    """$KPTOOLKIT_CACHE, else $XDG_CACHE_HOME/kptoolkit, else ~/.cache/kptoolkit."""
    explicit = os.environ.get("KPTOOLKIT_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "kptoolkit"


@contextlib.contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive file lock (several processes, e.g. torchrun ranks, may ask at once)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        try:
            import fcntl
        except ImportError:  # no POSIX locks: single-process use only
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
