"""Error types that the command line reports as one readable line (no traceback)."""

from __future__ import annotations

import errno


class KptoolkitError(Exception):
    """Base class of every error meant for the user rather than the developer."""


class ConfigError(KptoolkitError, ValueError):
    """A configuration file, key or value is invalid."""


class UnknownComponentError(KptoolkitError, LookupError):
    """A component name is not registered under the requested kind."""

    def __str__(self) -> str:  # LookupError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class DuplicateComponentError(KptoolkitError):
    """Two origins claim the same component name."""


class PluginLoadError(KptoolkitError, ImportError):
    """A registered component could not be imported."""


class ParameterError(KptoolkitError, TypeError):
    """Parameters given to a component do not match what it accepts."""


class CompatibilityError(KptoolkitError):
    """Two components cannot work together (e.g. a masker and a generator)."""


class BenchError(KptoolkitError):
    """A bench stage cannot run with what it was given (or found on disk)."""


class FrameSizeError(KptoolkitError, ValueError):
    """A frame size that a network's downsampling cannot divide."""


class ComponentBuildError(KptoolkitError, ValueError):
    """A registered component's constructor raised; the message names the component and where
    it comes from (a ValueError, as most such failures are bad values)."""


# what to do about the file-system errors a user can fix (others keep their traceback)
FILE_SYSTEM_ADVICE = {
    errno.EACCES: "kptoolkit writes there: give a writable --out (or KPTOOLKIT_CACHE)",
    errno.EPERM: "kptoolkit writes there: give a writable --out (or KPTOOLKIT_CACHE)",
    errno.EROFS: "a read-only file system: give a writable --out (or KPTOOLKIT_CACHE)",
    errno.ENOSPC: "the disk is full: free space or write elsewhere",
    errno.EDQUOT: "the disk quota is used up: free space or write elsewhere",
    errno.EFBIG: "larger than the file-size limit (ulimit -f) allows",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.ENAMETOOLONG: "the name is longer than the file system allows",
}


def file_system_error(exc: OSError) -> str | None:
    """One line for a file-system error a user can fix (None for any other OSError): what
    failed on which path, and what to do. Files written atomically are left as they were."""
    advice = FILE_SYSTEM_ADVICE.get(exc.errno) if exc.errno is not None else None
    if advice is None:
        return None
    where = f" {exc.filename}" if exc.filename else ""
    return f"cannot write{where}: {exc.strerror} ({advice}); nothing written before was changed"
