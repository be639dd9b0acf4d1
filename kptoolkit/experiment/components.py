"""Which components an experiment runs, and what their presets give them.

The command line's choices (`--masker`, `--generator`, `--set generator.name=...`), the natural
masker of a generator, and each component's parameters and loss terms: its preset's (the
experiment's `preset` or the section's own; `kptoolkit.registry.presets`), then the explicit values.
`expand_presets` writes these out into a config; `apply_with_presets` applies `--set` around it.
`kptoolkit.experiment.resolve` derives the rest (what the pair fixes) from here.
"""

from __future__ import annotations

from typing import Any

import attrs

from kptoolkit.config.schema import (
    ExperimentConfig,
    LossConfig,
    ModelConfig,
    apply_overrides,
    parse_override_value,
    split_override,
)
from kptoolkit.config.structuring import structure_params
from kptoolkit.errors import KptoolkitError
from kptoolkit.generators.base import Generator
from kptoolkit.losses.base import Loss
from kptoolkit.nn.component import hook
from kptoolkit.registry.presets import Preset, constructor_defaults, find_preset
from kptoolkit.registry.registries import GENERATORS, LOSSES, get_registry


def natural_masker(generator: str) -> str:
    """The masker a generator is used with when none is named (fomm -> fomm_keypoints, ...)."""
    return hook(GENERATORS.get(generator), "natural_masker", Generator)


def masker_name(config: ExperimentConfig) -> str:
    """The masker of the experiment: as named, or the generator's natural one."""
    return config.masker.name or natural_masker(config.generator.name)


def choose_components(
    config: ExperimentConfig, masker: str | None = None, generator: str | None = None
) -> ExperimentConfig:
    """`config` with the command line's --masker / --generator (in place; returned).

    A component that changes loses the old one's explicit parameters (the new one's come from
    the profile); a new generator without --masker gets its natural masker. Apply `--set`
    overrides after this, so that `masker.params.*` reach the component the command line chose.
    """
    if generator and generator != config.generator.name:
        config.generator = ModelConfig(generator)
        if not masker:
            config.masker = ModelConfig("")
    if masker and masker != config.masker.name:
        config.masker = ModelConfig(masker)
    return config


# -- presets ------------------------------------------------------------------------------------


# the keys naming presets: once the presets are written out (`expand_presets`), the values
# they gave are in the config and two configs that build the same model may name different ones
PRESET_KEYS = ("preset", "keypoints.preset", "masker.preset", "generator.preset")


COMPONENT_KEYS = ("masker.name", "generator.name")


def is_preset_key(key: str) -> bool:
    """Whether a `--set` key chooses a preset (`preset`, `generator.preset`, ...)."""
    return key.split(".")[-1] == "preset"


def apply_with_presets(config: ExperimentConfig, overrides: list[str]) -> ExperimentConfig:
    """Apply `--set` overrides around `expand_presets`: component choices (`generator.name`,
    `masker.name`, as `choose_components` makes them) and preset choices first, then the
    presets written out, then every other value, so that `generator.params.*` and
    `generator.losses.<name>.*` override what the chosen preset gave."""
    names = {}
    for item in overrides:
        key, text = split_override(item)
        if key in ("masker.name", "generator.name"):
            names[key.split(".")[0]] = str(parse_override_value(text) or "")
    if "generator" in names or "masker" in names:
        config = choose_components(config, names.get("masker"), names.get("generator"))
        if names.get("masker") == "":
            config.masker = ModelConfig("")  # the generator's natural masker
    rest = [item for item in overrides if split_override(item)[0] not in COMPONENT_KEYS]
    choices = [item for item in rest if is_preset_key(split_override(item)[0])]
    others = [item for item in rest if item not in choices]
    config = expand_presets(apply_overrides(config, choices))
    return apply_overrides(config, others)


def _preset(config: ExperimentConfig, kind: str, component: ModelConfig, name: str) -> Preset:
    registry = get_registry(kind)
    family = component.preset or config.preset
    return find_preset(registry.get(name), family, f"{registry.singular} '{name}'")


def component_params(
    config: ExperimentConfig, kind: str, component: ModelConfig, name: str
) -> dict[str, Any]:
    """The parameters of a masker or generator: its preset's, then its explicit `params`,
    converted to the types its constructor declares (a wrong one is a ConfigError naming the
    key, the type and the value)."""
    registry = get_registry(kind)
    params = structure_params(registry.get(name), component.params, f"{registry.singular}.params")
    return {**_preset(config, kind, component, name).params, **params}


def component_losses(
    config: ExperimentConfig, kind: str, component: ModelConfig, name: str
) -> list[LossConfig]:
    """The loss terms a masker or generator brings: its explicit `losses`, else its preset's."""
    if component.losses is not None:
        return list(component.losses)
    terms = _preset(config, kind, component, name).losses
    return [
        LossConfig(t["name"], t["weight"], list(t["outputs"]), dict(t["params"])) for t in terms
    ]


def detector_params(config: ExperimentConfig) -> dict[str, Any]:
    """KeypointDetector's parameters for every `keypoints` field (but the checkpoint and the
    preset name): the value set there, else the detector preset's, else its constructor's."""
    from kptoolkit.keypoints.detector import KeypointDetector

    keypoints = attrs.asdict(config.keypoints)
    family = keypoints.pop("preset") or config.preset
    del keypoints["checkpoint"]
    preset = find_preset(KeypointDetector, family, "the keypoint detector")
    defaults = {
        key: value
        for key, value in constructor_defaults(KeypointDetector).items()
        if key in keypoints
    }
    given = {key: value for key, value in keypoints.items() if value is not None}
    return {**defaults, **preset.params, **given}


def discriminator_params(config: ExperimentConfig) -> dict[str, Any]:
    """The discriminator's parameters: its preset's, then `discriminator`."""
    from kptoolkit.generators.discriminator import MultiScaleDiscriminator

    preset = find_preset(MultiScaleDiscriminator, config.preset, "the discriminator")
    return {**preset.params, **config.discriminator}


def needs_discriminator(losses: list[LossConfig]) -> bool:
    """Whether any of `losses` trains against a discriminator."""
    flags = ("needs_discriminator", "adversarial")
    return any(hook(LOSSES.get(loss.name), flag, Loss) for loss in losses for flag in flags)


def expand_presets(config: ExperimentConfig) -> ExperimentConfig:
    """Write into `config` (in place; returned) what its presets give: the masker's name (its
    natural one when empty), every component's parameters and loss terms, the detector's widths
    and, when a loss needs one, the discriminator's; each section then names its preset. What a
    saved config lists is then what is built. Unknown names are left for the resolver to report.
    """
    if config.generator.name in GENERATORS:
        config.masker.name = masker_name(config)
    for kind, component in (("maskers", config.masker), ("generators", config.generator)):
        if component.name not in get_registry(kind):
            continue
        component.params = component_params(config, kind, component, component.name)
        component.losses = component_losses(config, kind, component, component.name)
        component.preset = component.preset or config.preset
    for key, value in detector_params(config).items():
        if key in attrs.fields_dict(type(config.keypoints)):
            setattr(config.keypoints, key, value)
    config.keypoints.preset = config.keypoints.preset or config.preset
    try:
        adversarial = needs_discriminator(experiment_losses(config))
    except KptoolkitError:
        adversarial = False
    if adversarial:
        config.discriminator = discriminator_params(config)
    return config


def experiment_losses(config: ExperimentConfig) -> list[LossConfig]:
    """The experiment's loss terms plus those its generator and masker bring (their `losses`,
    else their presets')."""
    generator, masker = config.generator.name, masker_name(config)
    return [
        *config.losses,
        *component_losses(config, "generators", config.generator, generator),
        *component_losses(config, "maskers", config.masker, masker),
    ]
