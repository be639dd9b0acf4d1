"""Named presets that components own: their widths and the loss terms they bring.

A component class (masker, generator, discriminator, the keypoint detector) carries a
`presets` mapping from a preset name to a `Preset`. The built-in ones all have

- `paper`: the published widths (their constructors' defaults) and losses,
- `cpu64`: CPU-sized widths for 64 px frames (the built-in default experiment),
- `micro`: tiny widths for smoke runs and the test suite.

An experiment names one preset (`preset: cpu64`) for every component it builds; a component's
own `preset` key overrides that choice, and its `params` override single values. A component
without a `presets` table (a plugin that has none) runs with its constructor's defaults.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import attrs

from kptoolkit.errors import ConfigError

PAPER = "paper"
CPU64 = "cpu64"
MICRO = "micro"
PRESET_NAMES: tuple[str, ...] = (PAPER, CPU64, MICRO)


def loss_term(
    name: str,
    weight: float = 1.0,
    outputs: list[str] | None = None,
    params: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One loss term as plain config data (the layout of a `losses:` list item)."""
    return {
        "name": name,
        "weight": float(weight),
        "outputs": list(outputs) if outputs is not None else ["prediction"],
        "params": dict(params or {}),
    }


@attrs.frozen
class Preset:
    """A component's constructor parameters and the loss terms it brings under one name."""

    params: Mapping[str, Any] = attrs.field(factory=dict)
    losses: tuple[Mapping[str, Any], ...] = ()


NO_PRESET = Preset()


def presets_of(factory: Any) -> Mapping[str, Preset]:
    """The presets a component class declares (empty when it declares none)."""
    from kptoolkit.nn.component import Component, hook

    return hook(factory, "presets", Component) or {}


def find_preset(factory: Any, preset: str, label: str) -> Preset:
    """`factory`'s preset called `preset`; `label` names the component in the error.

    A component that declares no presets gets `NO_PRESET` (its constructor's defaults); one that
    declares some but not this one is a ConfigError listing what it has.
    """
    table = presets_of(factory)
    if not table:
        return NO_PRESET
    try:
        return table[preset]
    except KeyError:
        raise ConfigError(
            f"{label} has no preset {preset!r}; it has {', '.join(sorted(table))}"
        ) from None


def constructor_defaults(factory: Any) -> dict[str, Any]:
    """The parameters `factory` takes with a default, and those defaults (the values a preset
    that does not set them leaves)."""
    return {
        key: parameter.default
        for key, parameter in inspect.signature(factory).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }


def preset_params(kind: str, name: str, preset: str) -> dict[str, Any]:
    """The parameters the registered component `name` (of registry `kind`) takes under
    `preset`: what its preset sets (the constructor's defaults hold for the rest)."""
    from kptoolkit.registry.registries import get_registry

    registry = get_registry(kind)
    return dict(find_preset(registry.get(name), preset, f"{registry.singular} '{name}'").params)
