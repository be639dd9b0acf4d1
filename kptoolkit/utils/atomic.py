"""Atomic file writes: write a hidden sibling, then rename it over the target.

Readers never see half a file, and a write that fails or is killed leaves the old file (or none)
plus at most a hidden `.<name>.<pid>.partial<suffix>` sibling, never a truncated target.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

PARTIAL_MARK = ".partial"


# longest file name the partial file may take (file systems allow 255 bytes): a long target
# name is shortened in it, with a digest that keeps partials of different targets apart
LONGEST_NAME = 240


def partial_path(path: Path, suffix: str = "") -> Path:
    """The hidden sibling `path` is written to before the rename (`suffix` keeps an extension
    that a writer needs, e.g. ".mp4")."""
    tail = f".{os.getpid()}{PARTIAL_MARK}{suffix}"
    name = path.name
    if len(f".{name}{tail}".encode()) > LONGEST_NAME:
        digest = hashlib.sha256(name.encode()).hexdigest()[:12]
        room = LONGEST_NAME - len(tail.encode()) - len(digest) - 2
        name = name.encode()[:room].decode(errors="ignore") + "-" + digest
    return path.with_name(f".{name}{tail}")


def remove_orphans(folder: Path, recursive: bool = False) -> list[Path]:
    """Remove the partial files that killed writers left in `folder` (and below it when
    `recursive`); call it only while holding the folder's lock, when no write can be in
    progress. Returns them."""
    pattern = f".*{PARTIAL_MARK}*"
    if not folder.is_dir():
        return []
    found = sorted(folder.rglob(pattern) if recursive else folder.glob(pattern))
    for path in found:
        path.unlink(missing_ok=True)
    return found


def _fsync_directory(directory: Path) -> None:
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "", durable: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of `path` to write to; when the block ends without an error it
    is renamed over `path`, otherwise removed. `durable` also fsyncs the file and the folder
    (for checkpoints), so that the rename survives a power loss."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(path, suffix)
    try:
        yield partial
        if durable:
            with open(partial, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)  # left only when the block failed before the rename
    if durable:
        _fsync_directory(path.parent)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically; returns the path."""
    path = Path(path)
    with atomic_path(path) as partial:
        partial.write_text(text, encoding="utf-8")
    return path
