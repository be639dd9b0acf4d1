"""One experiment resolved once: the frozen plan that building, training and the bench read.

`plan_experiment(config, kp_checkpoint, device)` is the only caller of the resolver
(`kptoolkit.experiment.resolve`) on the way to a model. It works on a copy of `config` and
returns a `Plan`:

- `config`: the copy as a run saves it: presets written out, the derived values a saved config
  states, the detector file with its sha256 and shape, and (with a device or numerics) the
  resolved precision and layout with the `runtime` record;
- `components`: the masker and generator with their expanded parameters, the loss terms, the
  detector rule and widths, the discriminator's parameters;
- `detector_file`: the file the keypoint detector is read from (None: built fresh or none);
- `numerics`: the precision and layout resolved for the device (None for a plan that does not
  train); with them, `data.num_workers: auto` is resolved to a count
  (`kptoolkit.runtime.loading`).

`build_models(plan)`, `Trainer(plan, out)` and the bench take the plan and never resolve again;
a plan is picklable, so a bench row is "a plan plus a stage folder".
"""

from __future__ import annotations

from typing import Any

import attrs
import torch

from kptoolkit.config.schema import ExperimentConfig
from kptoolkit.config.structuring import structure, unstructure
from kptoolkit.experiment.components import expand_presets
from kptoolkit.experiment.resolve import (
    NO_DETECTOR,
    TRAINED_DETECTOR,
    ResolvedExperiment,
    record_detector_file,
    resolve_experiment,
)
from kptoolkit.runtime.loading import resolve_loader_workers
from kptoolkit.runtime.precision import Numerics, resolve_training_numerics, write_numerics

# derived values a saved config states explicitly (what the bench has always written into its
# rows' configs, so that cached rows keep matching); the rest is read off the plan
WRITTEN_MASKER_KEYS = ("num_kp", "scale_factor")
WRITTEN_GENERATOR_KEYS = ("mask_channels",)


@attrs.frozen
class Plan:
    """What one experiment builds, from what, at which precision: resolved once, never
    changed (see the module docstring)."""

    config: ExperimentConfig
    components: ResolvedExperiment
    detector_file: str | None = None
    numerics: Numerics | None = None

    @property
    def pair(self) -> str:
        """'masker+generator', the name of the pair in messages and folders."""
        return f"{self.components.masker}+{self.components.generator}"

    @property
    def seed(self) -> int:
        """The experiment's seed."""
        return self.config.seed

    @property
    def detector_trains(self) -> bool:
        """Whether the keypoint detector trains with the generator (the FOMM baseline)."""
        return self.components.detector == TRAINED_DETECTOR

    def loading_in_process(self) -> Plan:
        """The same plan with its batches loaded in the training process (`data.num_workers`
        0: the batches are the same, only where they are made changes)."""
        config = self.config_copy()
        config.data.num_workers = 0
        return attrs.evolve(self, config=config)

    def config_copy(self) -> ExperimentConfig:
        """A copy of the plan's config that the caller may change."""
        return copy_config(self.config)


def copy_config(config: ExperimentConfig) -> ExperimentConfig:
    """A deep copy of `config` (its attrs classes, lists and dicts)."""
    return structure(ExperimentConfig, unstructure(config))


def plan_experiment(
    config: ExperimentConfig,
    kp_checkpoint: str | None = None,
    device: torch.device | str | None = None,
    numerics: Numerics | None = None,
) -> Plan:
    """Resolve `config` (left unchanged) once into a `Plan`. The keypoint detector comes from
    `kp_checkpoint`, else `keypoints.checkpoint`; `device` resolves the training precision and
    layout (`auto`) for it, or `numerics` gives them already resolved (the bench resolves once
    for all its rows). One `CompatibilityError` lists every problem of the pair."""
    planned = copy_config(config)
    checkpoint = kp_checkpoint or planned.keypoints.checkpoint or None
    components = resolve_experiment(planned, checkpoint)
    _write_derived(planned, components, checkpoint)
    if numerics is not None:
        write_numerics(planned, numerics)
    elif device is not None:
        numerics = resolve_training_numerics(planned, device)
    if numerics is not None:
        planned.data.num_workers = resolve_loader_workers(
            planned.data.num_workers, numerics.hardware.device_type, planned.train.threads
        )
    detector_file = checkpoint if components.detector != NO_DETECTOR else None
    return Plan(planned, components, detector_file, numerics)


def _write_derived(
    config: ExperimentConfig, components: ResolvedExperiment, checkpoint: str | None
) -> None:
    """Write into the plan's `config` what its presets give, the detector file it reads, and
    the masker's `num_kp` and oracle `scale_factor` and the generator's `mask_channels` when
    derived, so that a saved run says what was built."""
    expand_presets(config)
    if components.detector != NO_DETECTOR and checkpoint:
        record_detector_file(config, checkpoint)
    written: tuple[tuple[Any, dict[str, Any], tuple[str, ...]], ...] = (
        (config.masker, components.masker_params, WRITTEN_MASKER_KEYS),
        (config.generator, components.generator_params, WRITTEN_GENERATOR_KEYS),
    )
    for component, params, keys in written:
        for key in keys:
            if key in params and key not in component.params:
                component.params[key] = params[key]
