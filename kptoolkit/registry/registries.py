"""Component registries: one `Registry` per kind, fed by entry points and in-process registration.

Built-in components and third-party plugins are found the same way: through the entry-point
groups `kptoolkit.<kind>` (`kptoolkit.maskers`, `kptoolkit.generators`, ...). Nothing is imported
until it is used, so `import kptoolkit` and `kptoolkit list` stay fast.
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import importlib.metadata
import inspect
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import attrs

from kptoolkit.errors import (
    ComponentBuildError,
    DuplicateComponentError,
    KptoolkitError,
    ParameterError,
    PluginLoadError,
    UnknownComponentError,
    file_system_error,
)
from kptoolkit.registry.introspect import first_doc_line, inspect_target

KINDS: tuple[str, ...] = (
    "maskers",
    "generators",
    "losses",
    "metrics",
    "evaluators",
    "datasets",
    "launchers",
)
GROUP_PREFIX = "kptoolkit."

T = TypeVar("T")


@attrs.frozen
class ComponentInfo:
    """One registered component as `kptoolkit list` shows it."""

    kind: str
    name: str
    origin: str
    target: str
    description: str
    problem: str | None = None

    @property
    def ok(self) -> bool:
        """False when the component is known not to load."""
        return self.problem is None


@attrs.define
class _Entry:
    name: str
    origin: str  # distribution name (with version) or "in-process"
    target: str  # "module:attr"
    entry_point: importlib.metadata.EntryPoint | None = None
    obj: Any = None
    load_error: PluginLoadError | None = None

    @property
    def loaded(self) -> bool:
        return self.obj is not None


def _target_of(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', repr(obj))}"


def _distribution_label(entry_point: importlib.metadata.EntryPoint) -> str:
    dist = getattr(entry_point, "dist", None)
    if dist is None:
        return "unknown distribution"
    return f"{dist.name} {dist.version}"


class Registry:
    """Named components of one kind (maskers, generators, ...), found through entry points."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.group = GROUP_PREFIX + kind
        self._entries: dict[str, _Entry] = {}
        self._conflicts: dict[str, list[_Entry]] = {}
        self._discovered = False
        self._lock = threading.RLock()

    @property
    def singular(self) -> str:
        """The kind in the singular, for messages ('masker')."""
        if self.kind.endswith("sses"):  # losses -> loss
            return self.kind[:-2]
        return self.kind[:-1] if self.kind.endswith("s") else self.kind

    # -- discovery -----------------------------------------------------------------------------
    def _discover(self) -> None:
        with self._lock:
            if self._discovered:
                return
            self._discovered = True
            seen: set[tuple[str, str, str]] = set()
            for ep in importlib.metadata.entry_points(group=self.group):
                origin = _distribution_label(ep)
                key = (ep.name, ep.value, origin)
                if key in seen:  # the same distribution visible twice on sys.path
                    continue
                seen.add(key)
                self._add(_Entry(ep.name, origin, ep.value, entry_point=ep))

    def _add(self, entry: _Entry) -> None:
        if entry.name in self._conflicts:
            self._conflicts[entry.name].append(entry)
        elif entry.name in self._entries:
            self._conflicts[entry.name] = [self._entries.pop(entry.name), entry]
        else:
            self._entries[entry.name] = entry

    def _add_in_process(self, entry: _Entry) -> None:
        existing = self._entries.get(entry.name)
        if existing is not None and existing.target != entry.target:
            raise DuplicateComponentError(
                f"{self.singular} '{entry.name}' is already registered by {existing.origin} "
                f"({existing.target}); {entry.target} cannot register it again. "
                "Choose another name."
            )
        if entry.name in self._conflicts:
            raise DuplicateComponentError(self._conflict_message(entry.name))
        self._entries[entry.name] = entry  # same target again (e.g. a re-run notebook cell)

    # -- registration --------------------------------------------------------------------------
    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator that registers a class or factory under `name` (default: its __name__)."""

        def decorator(obj: T) -> T:
            entry_name = name or getattr(obj, "__name__", None)
            if not entry_name:
                raise ValueError("register() needs a name for objects without __name__")
            entry = _Entry(entry_name, "in-process", _target_of(obj), obj=obj)
            self._discover()
            with self._lock:
                self._add_in_process(entry)
            return obj

        return decorator

    def unregister(self, name: str) -> None:
        """Remove an in-process registration (for tests and notebooks)."""
        self._discover()
        with self._lock:
            entry = self._entries.get(name)
            if entry is None or entry.entry_point is not None:
                raise UnknownComponentError(
                    f"no in-process {self.singular} named '{name}' to unregister"
                )
            del self._entries[name]

    def in_process(self) -> dict[str, Any]:
        """The components registered by code in this process (not by entry points), by name."""
        self._discover()
        with self._lock:
            return {n: e.obj for n, e in self._entries.items() if e.entry_point is None}

    # -- lookup --------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Every registered name, conflicting ones included, sorted."""
        self._discover()
        return sorted({*self._entries, *self._conflicts})

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def _conflict_message(self, name: str) -> str:
        origins = " and ".join(f"{e.origin} ({e.target})" for e in self._conflicts[name])
        return (
            f"{self.singular} name '{name}' is claimed by {origins}; uninstall one of them or "
            "rename its entry point"
        )

    def _entry(self, name: str) -> _Entry:
        self._discover()
        if name in self._conflicts:
            raise DuplicateComponentError(self._conflict_message(name))
        entry = self._entries.get(name)
        if entry is None:
            known = self.names()
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            listing = ", ".join(known) if known else "(none installed)"
            raise UnknownComponentError(
                f"unknown {self.singular} '{name}'.{hint} Registered {self.kind}: {listing}"
            )
        return entry

    def get(self, name: str) -> Any:
        """The registered class or factory, imported on first use."""
        entry = self._entry(name)
        with self._lock:
            if entry.loaded:
                return entry.obj
            if entry.load_error is not None:
                raise entry.load_error
            assert entry.entry_point is not None
            try:
                entry.obj = entry.entry_point.load()
            except Exception as exc:
                entry.load_error = PluginLoadError(
                    f"{self.singular} '{name}' could not be loaded: distribution {entry.origin}, "
                    f"entry point '{name} = {entry.target}' in group '{self.group}' raised "
                    f"{type(exc).__name__}: {exc}"
                )
                raise entry.load_error from exc
            return entry.obj

    def create(self, name: str, /, **params: Any) -> Any:
        """Build component `name` with `params`, checking the parameter names first."""
        factory = self.get(name)
        check_params(factory, params, f"{self.singular} '{name}'")
        try:
            return factory(**params)
        except KptoolkitError:
            raise
        except OSError as exc:
            if file_system_error(exc) is not None:
                raise  # a folder it cannot write: the CLI's line says what to do
            raise self._build_error(name, exc) from exc
        except Exception as exc:  # a plugin's own failure: name it, keep the cause chained
            raise self._build_error(name, exc) from exc

    def _build_error(self, name: str, exc: Exception) -> ComponentBuildError:
        origin = self._entry(name).origin
        return ComponentBuildError(
            f"{self.singular} '{name}' ({origin}) failed to build: {type(exc).__name__}: {exc}"
        )

    # -- listing -------------------------------------------------------------------------------
    def info(self, name: str, *, load: bool = False) -> ComponentInfo:
        """Describe one component; with `load`, import it to be sure that it works."""
        entry = self._entry(name)
        if load:
            with contextlib.suppress(PluginLoadError):
                self.get(name)
        return self._describe(entry)

    def _describe(self, entry: _Entry) -> ComponentInfo:
        if entry.loaded:
            description, problem = first_doc_line(getattr(entry.obj, "__doc__", None)), None
        elif entry.load_error is not None:
            description, problem = "", str(entry.load_error)
        else:
            static = inspect_target(entry.target)
            description, problem = static.description, static.problem
        return ComponentInfo(
            self.kind, entry.name, entry.origin, entry.target, description, problem
        )

    def list(self, pattern: str = "*", *, load: bool = False) -> list[ComponentInfo]:
        """Components whose names match the glob `pattern`, sorted by name."""
        self._discover()
        infos = []
        for name in self.names():
            if not fnmatch.fnmatchcase(name, pattern):
                continue
            if name in self._conflicts:
                message = self._conflict_message(name)
                for entry in self._conflicts[name]:
                    infos.append(attrs.evolve(self._describe(entry), problem=message))
                continue
            infos.append(self.info(name, load=load))
        return infos


def check_params(factory: Callable[..., Any], params: dict[str, Any], label: str) -> None:
    """Raise `ParameterError` naming the key when `params` do not fit `factory`'s signature."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return  # builtins without a signature: let the call itself complain
    accepted = {
        p.name: p
        for p in signature.parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    if not takes_any:
        for key in params:
            if key not in accepted:
                close = difflib.get_close_matches(key, list(accepted), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                known = ", ".join(accepted) or "none"
                raise ParameterError(
                    f"{label} has no parameter '{key}'{hint}; its parameters: {known}"
                )
    missing = [name for name, p in accepted.items() if p.default is p.empty and name not in params]
    if missing:
        raise ParameterError(f"{label} needs parameter(s): {', '.join(missing)}")


MASKERS = Registry("maskers")
GENERATORS = Registry("generators")
LOSSES = Registry("losses")
METRICS = Registry("metrics")
EVALUATORS = Registry("evaluators")
DATASETS = Registry("datasets")
LAUNCHERS = Registry("launchers")

REGISTRIES: dict[str, Registry] = {
    r.kind: r for r in (MASKERS, GENERATORS, LOSSES, METRICS, EVALUATORS, DATASETS, LAUNCHERS)
}


def get_registry(kind: str) -> Registry:
    """The registry of `kind`; accepts the plural or singular ('maskers' or 'masker')."""
    key = kind if kind in REGISTRIES else kind + "s"
    if key not in REGISTRIES:
        raise UnknownComponentError(f"unknown component kind '{kind}'; kinds: {', '.join(KINDS)}")
    return REGISTRIES[key]


def list_components(
    kind: str | Iterable[str] | None = None, pattern: str = "*", *, load: bool = False
) -> list[ComponentInfo]:
    """Components of one kind, several kinds, or all kinds whose names match `pattern`."""
    if kind is None:
        kinds: Iterable[str] = KINDS
    elif isinstance(kind, str):
        kinds = [kind]
    else:
        kinds = kind
    infos: list[ComponentInfo] = []
    for k in kinds:
        infos.extend(get_registry(k).list(pattern, load=load))
    return infos


def create_masker(name: str, /, **params: Any) -> Any:
    """Build a registered masker, e.g. `create_masker("heatmap_sum")`."""
    return MASKERS.create(name, **params)


def create_generator(name: str, /, **params: Any) -> Any:
    """Build a registered generator, e.g. `create_generator("two_stage")`."""
    return GENERATORS.create(name, **params)


def create_loss(name: str, /, **params: Any) -> Any:
    """Build a registered loss term."""
    return LOSSES.create(name, **params)


def create_metric(name: str, /, **params: Any) -> Any:
    """Build a registered metric."""
    return METRICS.create(name, **params)


def create_evaluator(name: str, /, **params: Any) -> Any:
    """Build a registered evaluator (pose or identity model used by AKD, MKR and AED)."""
    return EVALUATORS.create(name, **params)


def create_dataset(name: str, /, **params: Any) -> Any:
    """Build a registered dataset."""
    return DATASETS.create(name, **params)


def in_process_registrations() -> dict[str, dict[str, Any]]:
    """Every registry's in-process components ({kind: {name: component}}), for a worker process
    to `restore_registrations` (entry points it finds itself)."""
    found = {kind: registry.in_process() for kind, registry in REGISTRIES.items()}
    return {kind: entries for kind, entries in found.items() if entries}


def restore_registrations(registrations: dict[str, dict[str, Any]]) -> None:
    """Register what `in_process_registrations` found in another process."""
    for kind, entries in registrations.items():
        for name, component in entries.items():
            REGISTRIES[kind].register(name)(component)
