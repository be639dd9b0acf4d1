"""Plain data (parsed YAML) to attrs classes and back, every key checked.

`structure` builds an attrs class from nested mappings and lists, converting values to the
fields' types (a YAML `1e-4` string to a float, ...) and rejecting an unknown key by its full
dotted path with the closest known one; `unstructure` gives the plain data back.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar, Union

import attrs

from kptoolkit.errors import ConfigError

T = TypeVar("T")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def suggest(key: str, options: Iterable[str], prefix: str = "") -> str:
    """' (did you mean 'prefix.close'?)' for the option closest to `key`, else ''."""
    close = difflib.get_close_matches(key, list(options), n=1)
    return f" (did you mean '{prefix}{close[0]}'?)" if close else ""


def _convert(value: Any, tp: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if attrs.has(tp):
        return structure(tp, value, path)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(value, arg, path)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{path}: invalid value {value!r}")
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        (item_type,) = args or (Any,)
        return [_convert(v, item_type, f"{path}.{i}") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        _, value_type = args or (str, Any)
        return {str(k): _convert(v, value_type, f"{path}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        raise ConfigError(f"{path}: unsupported field type {tp!r}")
    raise ConfigError(f"{path}: expected {_type_name(tp)}, got {value!r}")


def structure(cls: type[T], data: Any, path: str = "") -> T:
    """Build attrs class `cls` from plain data, rejecting unknown keys by full dotted path."""
    label = path or "config"
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{label}: expected a mapping, got {data!r}")
    fields = {f.name: f for f in attrs.fields(attrs.resolve_types(cls))}
    prefix = f"{path}." if path else ""
    for key in data:
        if key not in fields:
            raise ConfigError(
                f"unknown config key '{prefix}{key}'{suggest(str(key), fields, prefix)}"
            )
    kwargs = {k: _convert(v, fields[k].type, prefix + k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{label}: {exc}") from exc


def unstructure(obj: Any) -> Any:
    """Plain dicts and lists (YAML-ready) from an attrs instance."""
    return attrs.asdict(obj)
