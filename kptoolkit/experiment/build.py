"""Building the models of an experiment from its config: masker, generator, detector, discriminator.

Who gets a detector:
- maskers that read the shared detector (heatmap_sum, ...) get a frozen one, loaded from
  `keypoints.checkpoint` (an official FOMM file or a kptoolkit checkpoint);
- the FOMM baseline (a generator that requires keypoints) trains its detector jointly, built from
  the `keypoints` widths, or initialised from `keypoints.checkpoint` when one is given.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn

from kptoolkit.config.schema import ExperimentConfig, LossConfig
from kptoolkit.errors import CompatibilityError
from kptoolkit.experiment.plan import Plan
from kptoolkit.experiment.resolve import FROZEN_DETECTOR, NO_DETECTOR, dataset_params
from kptoolkit.generators.base import Generator
from kptoolkit.keypoints.detector import FrozenDetector, KeypointDetector
from kptoolkit.keypoints.loading import load_detector
from kptoolkit.maskers.base import Masker
from kptoolkit.registry.registries import DATASETS, GENERATORS, LOSSES, MASKERS
from kptoolkit.utils.checkpoint_io import load_strict


@attrs.define
class Models:
    """Every network of one experiment, and which of them train."""

    masker_name: str
    generator_name: str
    masker: Masker
    generator: Generator
    detector: nn.Module | None = None
    detector_trains: bool = False
    discriminator: nn.Module | None = None

    def trainable(self) -> dict[str, nn.Module]:
        """The optimised groups, each with its own optimizer: generator, masker, detector, D."""
        groups: dict[str, nn.Module] = {"generator": self.generator}
        if any(p.requires_grad for p in self.masker.parameters()):
            groups["masker"] = self.masker
        if self.detector_trains and self.detector is not None:
            groups["detector"] = self.detector
        if self.discriminator is not None:
            groups["discriminator"] = self.discriminator
        return groups

    def modules(self) -> dict[str, nn.Module]:
        """Every network with a state worth saving (the frozen detector included)."""
        found: dict[str, nn.Module] = {"generator": self.generator, "masker": self.masker}
        if self.detector is not None:
            found["detector"] = _unfrozen(self.detector)
        if self.discriminator is not None:
            found["discriminator"] = self.discriminator
        return found

    def state_dicts(self) -> dict[str, dict[str, torch.Tensor]]:
        """State dicts by role, as stored under `models` in a kptoolkit checkpoint."""
        return {name: module.state_dict() for name, module in self.modules().items()}

    def load_state_dicts(self, states: Mapping[str, Mapping[str, torch.Tensor]], what: str) -> None:
        """Load every role present in `states`, strictly."""
        for name, module in self.modules().items():
            if name in states:
                load_strict(module, states[name], f"{name} of {what}")

    def to(self, device: torch.device | str) -> Models:
        """Move every network to `device`."""
        for module in self.modules().values():
            module.to(device)
        return self

    def train(self, mode: bool = True) -> None:
        """Training or eval mode for every network (a frozen detector stays in eval)."""
        for module in (self.generator, self.masker, self.detector, self.discriminator):
            if module is not None:
                module.train(mode)


def _unfrozen(detector: nn.Module) -> nn.Module:
    return detector.detector if isinstance(detector, FrozenDetector) else detector


def build_models(plan: Plan) -> Models:
    """Every network of the plan; weights freshly initialised (from the plan's seed) except the
    keypoint detector, which is read from the plan's detector file. Nothing is resolved here:
    the plan was checked when it was made."""
    components = plan.components
    trains = plan.detector_trains
    if components.detector == FROZEN_DETECTOR and not plan.detector_file:
        raise _no_checkpoint(components.masker)
    torch.manual_seed(plan.seed)
    masker = MASKERS.create(components.masker, **components.masker_params)
    generator = GENERATORS.create(components.generator, **components.generator_params)
    masker.register_forward_hook(_mask_channel_check(components.masker))
    models = Models(components.masker, components.generator, masker, generator)
    if components.detector != NO_DETECTOR:
        models.detector = _detector(plan, trains)
        models.detector_trains = trains
        masker.attach_detector(models.detector)
    if components.discriminator_params is not None:
        from kptoolkit.generators.discriminator import MultiScaleDiscriminator

        models.discriminator = MultiScaleDiscriminator(**components.discriminator_params)
    return models


def _mask_channel_check(name: str) -> Any:
    """A forward hook that stops a masker whose masks do not have the channels it declares (a
    plugin's `mask_channels_for`), naming it and both numbers, before a generator sees them."""

    def check(masker: nn.Module, inputs: Any, output: Any) -> None:
        mask = getattr(output, "mask", None)
        declared = getattr(masker, "channels", None)
        if mask is not None and declared is not None and mask.shape[1] != declared:
            raise CompatibilityError(
                f"masker '{name}' returned {mask.shape[1]}-channel masks but declares "
                f"{declared} (its mask_channels_for / channels)"
            )

    return check


def _no_checkpoint(masker: str) -> CompatibilityError:
    return CompatibilityError(
        f"masker '{masker}' reads a pretrained keypoint detector: give one with "
        "--kp-checkpoint FILE (or keypoints.checkpoint), e.g. an official taichi-cpk.pth.tar "
        "or the checkpoint of a kptoolkit run of the fomm baseline"
    )


def _detector(plan: Plan, trains: bool) -> nn.Module:
    if plan.detector_file:
        temperature = plan.config.keypoints.temperature
        return load_detector(plan.detector_file, temperature=temperature, frozen=not trains)
    return KeypointDetector(**plan.components.detector_params)


def build_dataset(config: ExperimentConfig, split: str, root: str | Path | None = None) -> Any:
    """The experiment's dataset for `split` ('train' or 'test')."""
    name, params = dataset_params(config, split, root)
    return DATASETS.create(name, **params)


def build_losses(plan: Plan) -> list[tuple[LossConfig, nn.Module]]:
    """Each of the plan's loss terms with its module (weights files are read now: fail fast)."""
    return [(loss, LOSSES.create(loss.name, **loss.params)) for loss in plan.components.losses]
