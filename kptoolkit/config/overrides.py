"""`--set a.b=value` overrides: values parsed as YAML scalars, keys checked against the schema
(an unknown key names its full dotted path, with the closest known one), list items addressed
by index or by name."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import yaml

from kptoolkit.config.legacy import LEGACY_AMP_KEY, amp_as_precision
from kptoolkit.config.structuring import structure, suggest, unstructure
from kptoolkit.errors import ConfigError


def number_or_text(value: Any) -> Any:
    """A string that reads as a number becomes a float (YAML 1.1 leaves `1e-4` a string)."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def parse_override_value(text: str) -> Any:
    """A command-line value as YAML, with YAML 1.1's dotless floats (1e-4) read as numbers."""
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text
    return number_or_text(value)


def _known_keys(config_node: Any) -> list[str] | None:
    if attrs.has(type(config_node)):
        return [f.name for f in attrs.fields(type(config_node))]
    return None  # free-form mapping (component params) or list


def split_override(item: str) -> tuple[str, str]:
    """(key, value text) of one `a.b.c=value` override, or a ConfigError."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override '{item}' is not of the form key.path=value")
    return key, text


def apply_overrides(config: Any, overrides: Iterable[str]) -> Any:
    """Apply `a.b.c=value` overrides; a list item is addressed by its index or, when unique, by
    its name (`losses.0.weight=5`, `generator.losses.equivariance.weight=0.01`)."""
    overrides = list(overrides)
    if not overrides:
        return config
    data = unstructure(config)
    for item in overrides:
        key, text = split_override(item)
        value = parse_override_value(text)
        if key == LEGACY_AMP_KEY:  # before train.precision
            key, value = "train.precision", amp_as_precision(value)
        _set_path(config, data, key.split("."), value)
    return structure(type(config), data)


def _list_index(items: list[Any], part: str, path: str) -> int:
    """The index `part` addresses in a config list: a number, or the `name` of one item."""
    if part.isdigit() and int(part) < len(items):
        return int(part)
    named = [
        i for i, item in enumerate(items) if isinstance(item, Mapping) and item.get("name") == part
    ]
    if len(named) == 1:
        return named[0]
    names = [str(item.get("name")) for item in items if isinstance(item, Mapping)]
    if len(named) > 1:
        raise ConfigError(
            f"config key '{path}': {len(named)} items are called {part!r}; address one by its "
            f"index ({', '.join(str(i) for i in named)})"
        )
    listed = f": {', '.join(names)}" if names else ""
    raise ConfigError(f"unknown config key '{path}': the list has {len(items)} item(s){listed}")


def _set_path(config: Any, data: Any, parts: list[str], value: Any) -> None:
    node, typed = data, config
    for depth, part in enumerate(parts):
        path = ".".join(parts[: depth + 1])
        last = depth == len(parts) - 1
        if isinstance(node, list):
            index = _list_index(node, part, path)
            typed = typed[index] if isinstance(typed, list) else None
            if last:
                node[index] = value
                return
            node = node[index]
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"unknown config key '{path}': '{parts[depth - 1]}' has no keys")
        known = _known_keys(typed)
        if known is not None and part not in known:
            parent = ".".join(parts[:depth])
            hint = suggest(part, known, f"{parent}." if parent else "")
            raise ConfigError(f"unknown config key '{path}'{hint}")
        if last:
            node[part] = value
            return
        if part not in node or node[part] is None:
            if known is None:
                node[part] = {}
            else:
                raise ConfigError(f"cannot set '{'.'.join(parts)}': '{path}' is empty")
        node = node[part]
        typed = getattr(typed, part, None) if known is not None else None
