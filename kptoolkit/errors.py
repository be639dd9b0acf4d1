"""Error types that the command line reports as one readable line (no traceback)."""

from __future__ import annotations


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
