"""Plain data (parsed YAML) to attrs classes and back, every key checked.

`structure` builds an attrs class from nested mappings and lists, converting values to the
fields' types (a YAML `1e-4` string to a float, ...) and rejecting an unknown key by its full
dotted path with the closest known one; `unstructure` gives the plain data back.
`structure_params` does the same for a component's parameters, against the types its
constructor declares.
"""

from __future__ import annotations

import collections.abc
import difflib
import inspect
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, TypeVar, Union

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


# sequence types a parameter may declare; a list or a tuple is accepted for any of them
SEQUENCES = (list, tuple, collections.abc.Sequence, collections.abc.MutableSequence)


def _param_type_name(tp: Any) -> str:
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "").replace("collections.abc.", "")


def parameter_types(factory: Callable[..., Any]) -> dict[str, Any]:
    """The type each parameter of `factory` (a class: its constructor) declares, for those whose
    annotation can be evaluated; a parameter without one is left out."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return {}
    target = factory.__init__ if isinstance(factory, type) else factory
    module = sys.modules.get(getattr(target, "__module__", None) or "")
    namespace = dict(vars(module)) if module is not None else {}
    declared = {}
    for name, parameter in signature.parameters.items():
        annotation = parameter.annotation
        if annotation is parameter.empty:
            continue
        if isinstance(annotation, str):  # `from __future__ import annotations`
            try:
                annotation = eval(annotation, namespace)  # as typing.get_type_hints does
            except (NameError, AttributeError, TypeError, SyntaxError):
                continue  # a name imported for type checkers only: the constructor checks it
        declared[name] = annotation
    return declared


def _param_value(value: Any, tp: Any, path: str) -> Any:
    """`value` converted to the declared type `tp` (int, float, bool, str, their unions,
    literals and sequences); other types are the constructor's to check."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    wrong = ConfigError(f"{path}: expected {_param_type_name(tp)}, got {value!r}")
    if tp in (int, float, bool, str):
        try:
            return _convert(value, tp, path)
        except ConfigError:
            raise wrong from None
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _param_value(value, arg, path)
            except ConfigError:
                continue
        raise wrong
    if origin is Literal:
        if any(value == arg and type(value) is type(arg) for arg in args):
            return value
        raise ConfigError(
            f"{path}: expected one of {', '.join(repr(a) for a in args)}, got {value!r}"
        )
    if tp in SEQUENCES or origin in SEQUENCES:
        if not isinstance(value, list | tuple):
            raise wrong
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise wrong
            pairs = enumerate(zip(value, args, strict=True))
            items = [_param_value(v, a, f"{path}.{i}") for i, (v, a) in pairs]
        else:
            item_type = args[0] if args else Any
            items = [_param_value(v, item_type, f"{path}.{i}") for i, v in enumerate(value)]
        return type(value)(items)
    return value


def structure_params(
    factory: Callable[..., Any], params: Mapping[str, Any], path: str
) -> dict[str, Any]:
    """`params` converted to the types `factory`'s parameters declare (a YAML `1e-4` string to a
    float, an int to a float); a value of another type is a ConfigError naming `path.key`, the
    type and the value, before anything is built. A value equal to the parameter's default
    always passes (`x: int = None`), and keys the factory does not take are left for the
    parameter check to report."""
    declared = parameter_types(factory)
    try:
        defaults = {
            name: parameter.default
            for name, parameter in inspect.signature(factory).parameters.items()
        }
    except (TypeError, ValueError):
        defaults = {}
    converted = {}
    for key, value in params.items():
        tp = declared.get(key, Any)
        default = defaults.get(key, inspect.Parameter.empty)
        if tp is Any or (default is not inspect.Parameter.empty and _same(value, default)):
            converted[key] = value
        else:
            converted[key] = _param_value(value, tp, f"{path}.{key}")
    return converted


def _same(value: Any, default: Any) -> bool:
    try:
        return bool(value is default or (type(value) is type(default) and value == default))
    except (TypeError, ValueError, RuntimeError):  # arrays: their == is not one bool
        return False
