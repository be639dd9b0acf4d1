"""The `Loss` interface: one named, unweighted term; the config gives its weight and outputs."""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch
from torch import nn

from kptoolkit.errors import ConfigError
from kptoolkit.structure import Structure


@attrs.define
class LossInputs:
    """Everything a loss term may read during one training step.

    `batch` holds at least `source` and `driving` (B,3,H,W); `outputs` the generator's outputs
    (`prediction`, `low_res_prediction`, ...); `extras` what the masker's `driving_for_training`
    returned. `detector` is the keypoint detector when it trains (the FOMM baseline), else None;
    `discriminator` the GAN discriminator when one is configured. `autocast_dtype` is the
    forward pass's autocast precision (None when the step runs in float32).
    """

    batch: dict[str, torch.Tensor]
    outputs: dict[str, torch.Tensor]
    source_structure: Structure
    driving_structure: Structure
    extras: dict[str, torch.Tensor] = attrs.field(factory=dict)
    detector: nn.Module | None = None
    discriminator: nn.Module | None = None
    rng: torch.Generator | None = None  # the step's random numbers (seeded per step and rank)
    epoch: int = 0
    autocast_dtype: torch.dtype | None = None  # the forward pass's autocast (None: float32)

    def autocast(self) -> torch.autocast:
        """The forward pass's autocast, for a network a loss runs on the step's frames (the
        trained detector in the equivariance term): disabled when the step is in float32."""
        device = self.batch["driving"].device.type
        return torch.autocast(device, self.autocast_dtype, enabled=self.autocast_dtype is not None)

    @property
    def target(self) -> torch.Tensor:
        """The frame the generator reconstructs (the driving frame)."""
        return self.batch["driving"]


class Loss(nn.Module):
    """Base class: `forward(inputs, output) -> scalar`, for one configured output name.

    The trainer calls a loss once per name in its config's `outputs` (e.g. `prediction` and
    `low_res_prediction`), multiplies by the configured weight and sums. Losses that do not
    compare an output with the target (equivariance, mask correction) ignore `output`.
    """

    HOOKS: ClassVar[tuple[str, ...]] = (
        "adversarial",
        "needs_discriminator",
        "reads_extras",
        "start_epoch",
        "discriminator_loss",
    )

    #: whether the term needs a discriminator step of its own (GAN losses)
    adversarial: bool = False
    #: whether the term reads the discriminator (GAN and feature-matching losses): the engine
    #: builds one when any configured term does
    needs_discriminator: bool = False
    #: whether the term reads the masker's `driving_for_training` extras (the trainer only runs
    #: that, e.g. the perturbed-mask refinement network, while such a term is active)
    reads_extras: bool = False
    #: first epoch (0-based) in which the term is active
    start_epoch: int = 0

    def forward(self, inputs: LossInputs, output: str) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def discriminator_loss(self, inputs: LossInputs, output: str) -> torch.Tensor:
        """The discriminator's own objective (adversarial losses only)."""
        raise NotImplementedError(f"{type(self).__name__} has no discriminator objective")


def output_tensor(inputs: LossInputs, output: str, loss_name: str) -> torch.Tensor:
    """`inputs.outputs[output]`, or an error naming the loss and the outputs that exist."""
    try:
        return inputs.outputs[output]
    except KeyError:
        raise ConfigError(
            f"loss '{loss_name}' is configured for output '{output}', which the generator does "
            f"not produce; its outputs: {', '.join(sorted(inputs.outputs))}"
        ) from None
