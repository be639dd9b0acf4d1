"""Configs written before components owned their presets, converted to the current layout."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from kptoolkit.errors import ConfigError


class LegacyLayoutWarning(UserWarning):
    """A config in the layout before presets was converted; some settings may be gone."""


LEGACY_KEYS = ("component_params", "component_losses")
LEGACY_AMP_KEY = "train.amp"


def amp_as_precision(value: Any) -> str:
    """The `train.precision` an old `train.amp` meant: bf16 for true (autocast was bfloat16 on
    every machine a kptoolkit run has trained on), fp32 for false."""
    if isinstance(value, bool):
        return "bf16" if value else "fp32"
    raise ConfigError(
        f"train.amp must be true or false, got {value!r}; it is now train.precision "
        "(auto, fp32, bf16 or fp16)"
    )


def upgrade_train_amp(data: Any) -> Any:
    """A config's `train.amp` (before `train.precision`) as the precision it meant; a
    `train.precision` the same file gives wins."""
    train = data.get("train") if isinstance(data, Mapping) else None
    if not isinstance(train, Mapping) or "amp" not in train:
        return data
    train = dict(train)
    precision = amp_as_precision(train.pop("amp"))
    train.setdefault("precision", precision)
    return {**data, "train": train}


def upgrade_legacy_layout(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Convert a config written before presets (`component_params`, `component_losses`,
    `eval.evaluators`) into the current layout; other data is returned as it is.

    The running masker's and generator's entries become their `params` and `losses`, under the
    `paper` preset (the constructors' defaults, which is what the old layout built on), so a run
    folder's config builds the same model. Entries of components that do not run are dropped
    with a `LegacyLayoutWarning` saying how to write the file in the current layout.
    """
    data = upgrade_train_amp(data)
    evaluators = (data.get("eval") or {}).get("evaluators") if isinstance(data, Mapping) else None
    if evaluators:
        raise ConfigError(
            f"eval.evaluators={evaluators!r}: the key is gone (it was never read); choose "
            "evaluators with `kptoolkit metrics --evaluator NAME`"
        )
    if not isinstance(data, Mapping) or not any(key in data for key in LEGACY_KEYS):
        if isinstance(data, Mapping) and isinstance(data.get("eval"), Mapping):
            data = {**data, "eval": {k: v for k, v in data["eval"].items() if k != "evaluators"}}
        return data
    out = {k: v for k, v in data.items() if k not in LEGACY_KEYS}
    if isinstance(out.get("eval"), Mapping):
        out["eval"] = {k: v for k, v in out["eval"].items() if k != "evaluators"}
    params = dict(data.get("component_params") or {})
    losses = dict(data.get("component_losses") or {})
    out.setdefault("preset", "paper")
    running = []
    for section in ("masker", "generator"):
        component = dict(out.get(section) or {})
        name = component.get("name", "")
        running.append(name)
        component["params"] = {**(params.get(name) or {}), **(component.get("params") or {})}
        component.setdefault("losses", list(losses.get(name) or []))
        out[section] = component
    dropped = sorted((set(params) | set(losses)) - set(running))
    if dropped:
        warnings.warn(
            "converted a config in the layout before presets: the settings of "
            f"{', '.join(dropped)} (which do not run in it) were dropped. Name a preset "
            "(`preset: cpu64`, paper or micro) and list only the masker and generator that "
            "run; `kptoolkit config show` prints the current layout",
            LegacyLayoutWarning,
            stacklevel=3,
        )
    return out
