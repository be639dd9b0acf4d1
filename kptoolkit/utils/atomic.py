"""Atomic file writes: write a hidden sibling, then rename it over the target.

Readers never see half a file, and a write that fails or is killed leaves the old file (or none)
plus at most a hidden `.<name>.<pid>.partial<suffix>` sibling, never a truncated target. A write
the OS refuses without naming the file (a full disk, `ulimit -f`) names the target.

For commands: `check_outputs` refuses outputs that something is in the way of before anything
is written, and `removed_on_failure` removes what a failed command created.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from kptoolkit.errors import KptoolkitError

PARTIAL_MARK = ".partial"

# errors of a write that say nothing of the file (the OS leaves `filename` empty): they are
# given the target's name, so that the message says which file could not be written
WRITE_ERRNOS = frozenset({errno.EFBIG, errno.ENOSPC, errno.EDQUOT})


class OutputPathError(KptoolkitError, FileExistsError):
    """Something of the other kind is where an output goes: a folder where a file is written,
    a file where a folder is (or among its parents)."""


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


def remove_orphans(
    folder: Path, recursive: bool = False, busy: Callable[[Path], bool] | None = None
) -> list[Path]:
    """Remove the partial files that killed writers left in `folder` (and below it when
    `recursive`); call it only while holding the folder's lock, when no write can be in
    progress. `busy(subfolder)`: a subfolder another writer still holds (its partial files are
    live writes, kept). Returns the files removed."""
    pattern = f".*{PARTIAL_MARK}*"
    if not folder.is_dir():
        return []
    found = sorted(folder.rglob(pattern) if recursive else folder.glob(pattern))
    if busy is not None:
        found = [path for path in found if not _under_busy(path, folder, busy)]
    for path in found:
        path.unlink(missing_ok=True)
    return found


def _under_busy(path: Path, top: Path, busy: Callable[[Path], bool]) -> bool:
    """Whether a folder between `top` (excluded) and `path` is `busy`."""
    parent = path.parent
    while parent != top and top in parent.parents:
        if busy(parent):
            return True
        parent = parent.parent
    return False


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
    except OSError as exc:
        _name_the_target(exc, partial, path)
        raise
    finally:
        partial.unlink(missing_ok=True)  # left only when the block failed before the rename
    if durable:
        _fsync_directory(path.parent)


def _name_the_target(exc: OSError, partial: Path, path: Path) -> None:
    """Make `exc` name `path` when it names the hidden partial file, or no file at all for a
    write that failed (a full disk, a file-size limit: a writer's `write` says no name)."""
    if exc.filename == str(partial) or (exc.filename is None and exc.errno in WRITE_ERRNOS):
        exc.filename = str(path)


def check_outputs(files: Iterable[str | Path] = (), folders: Iterable[str | Path] = ()) -> None:
    """Raise `OutputPathError` when one of `files` or `folders` cannot be written because
    something of the other kind is in the way: a folder where a file goes, a file where a
    folder goes, or a file among their parents. Call it before writing anything, so that a
    refused command leaves nothing behind."""
    wanted = [(Path(f), True) for f in folders] + [(Path(f), False) for f in files]
    for path, folder in wanted:
        if folder and (path.exists() or path.is_symlink()) and not path.is_dir():
            raise OutputPathError(f"cannot write into {path}: it is a file, not a folder")
        if not folder and path.is_dir():
            raise OutputPathError(f"cannot write {path}: it is a folder, not a file")
        for parent in path.parents:
            if parent.is_dir():
                break
            if parent.exists() or parent.is_symlink():
                raise OutputPathError(f"cannot write {path}: {parent} is a file, not a folder")


class CreatedPaths:
    """The files and folders that a command creates, so that a failed command removes them
    again (`removed_on_failure`); what was there before is never removed."""

    def __init__(self) -> None:
        self.files: list[Path] = []
        self.folders: list[Path] = []

    def mkdir(self, folder: str | Path) -> Path:
        """Create `folder` and its missing parents, remembering which were missing."""
        folder = Path(folder)
        missing = [p for p in (folder, *folder.parents) if not p.is_dir()]
        folder.mkdir(parents=True, exist_ok=True)
        self.folders.extend(reversed(missing))
        return folder

    @contextlib.contextmanager
    def atomic_path(self, path: str | Path, suffix: str = "") -> Iterator[Path]:
        """`atomic_path` into a folder created through `mkdir`; a new file is remembered."""
        path = Path(path)
        self.mkdir(path.parent)
        new = not path.exists()
        with atomic_path(path, suffix) as partial:
            yield partial
        if new:
            self.files.append(path)

    def remove(self) -> None:
        """Remove the files created, then the folders created (those left empty)."""
        for path in reversed(self.files):
            path.unlink(missing_ok=True)
        for folder in reversed(self.folders):
            with contextlib.suppress(OSError):
                folder.rmdir()


@contextlib.contextmanager
def removed_on_failure() -> Iterator[CreatedPaths]:
    """Yield a `CreatedPaths` whose files and folders are removed when the block fails (an
    exception or an interrupt), so that a failed command leaves nothing half-written."""
    created = CreatedPaths()
    try:
        yield created
    except BaseException:
        created.remove()
        raise


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically; returns the path."""
    path = Path(path)
    with atomic_path(path) as partial:
        partial.write_text(text, encoding="utf-8")
    return path
