"""FOMM's LSGAN objective and discriminator feature matching (multi-scale PatchGAN).

Both terms read `inputs.discriminator`, a module called as `discriminator(frames, keypoints=...)`
that returns {scale name: output with `feature_maps` (list) and `prediction_map`}, such as
`kptoolkit.generators.discriminator.MultiScaleDiscriminator` (which builds the image pyramid
itself). The
generated frame is `inputs.outputs[output]`; the real one is `inputs.target` (the driving frame),
downscaled with the anti-aliased filter when the output is smaller (e.g. `low_res_prediction`).
The driving keypoints, detached, are passed for discriminators with `use_kp` (as FOMM does).
As in FOMM, the per-scale terms are summed over scales, not averaged. GAN training is off by
default for Tai-Chi (FOMM's `generator_gan: 0`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from kptoolkit.errors import ConfigError
from kptoolkit.losses.base import Loss, LossInputs, output_tensor
from kptoolkit.nn.anti_alias import anti_alias_downscale, anti_alias_kernel


def real_like(target: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """`target` at the resolution of `fake`: itself, or anti-aliased downscaled by an integer."""
    if target.shape[-2:] == fake.shape[-2:]:
        return target
    (height, width), (small_h, small_w) = target.shape[-2:], fake.shape[-2:]
    stride = height // small_h
    if stride * small_h != height or stride * small_w != width:
        raise ConfigError(
            f"cannot compare a {small_h}x{small_w} output with the {height}x{width} target: the "
            f"output must be the target downscaled by an integer factor"
        )
    kernel = anti_alias_kernel(1 / stride, target.dtype).to(target.device)
    return anti_alias_downscale(target, kernel.expand(target.shape[1], 1, *kernel.shape), stride)


def lsgan_generator_loss(fake_maps: Sequence[torch.Tensor]) -> torch.Tensor:
    """sum over scales of mean((1 - D(fake))^2)."""
    return sum((((1 - fake) ** 2).mean() for fake in fake_maps), start=fake_maps[0].new_zeros(()))


def lsgan_discriminator_loss(
    real_maps: Sequence[torch.Tensor], fake_maps: Sequence[torch.Tensor]
) -> torch.Tensor:
    """sum over scales of mean((1 - D(real))^2 + D(fake)^2)."""
    terms = (
        ((1 - real) ** 2 + fake**2).mean() for real, fake in zip(real_maps, fake_maps, strict=True)
    )
    return sum(terms, start=real_maps[0].new_zeros(()))


def feature_matching_loss(
    real_features: Sequence[Sequence[torch.Tensor]],
    fake_features: Sequence[Sequence[torch.Tensor]],
    layer_weights: Sequence[float],
) -> torch.Tensor:
    """sum over scales and layers of weight * mean |real - fake| (layers of weight 0 skipped)."""
    total = fake_features[0][0].new_zeros(())
    for real_maps, fake_maps in zip(real_features, fake_features, strict=True):
        if len(fake_maps) != len(layer_weights):
            raise ConfigError(
                f"loss 'feature_matching' has {len(layer_weights)} layer weights but the "
                f"discriminator gives {len(fake_maps)} feature maps per scale"
            )
        for real, fake, weight in zip(real_maps, fake_maps, layer_weights, strict=True):
            if weight != 0:
                total = total + weight * (real - fake).abs().mean()
    return total


def _require_discriminator(inputs: LossInputs, loss_name: str) -> nn.Module:
    if inputs.discriminator is None:
        raise ConfigError(
            f"loss '{loss_name}' needs a discriminator, but none is configured; add one (e.g. "
            f"the multi-scale PatchGAN of kptoolkit.generators.discriminator) or remove the loss"
        )
    return inputs.discriminator


def _discriminate(
    discriminator: nn.Module, frames: torch.Tensor, inputs: LossInputs
) -> Mapping[str, Any]:
    keypoints = inputs.driving_structure.keypoints
    if keypoints is not None:
        keypoints = keypoints.detach()
    return discriminator(frames, keypoints=keypoints)


def _frames(inputs: LossInputs, output: str, loss_name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(real, fake) at the output's resolution."""
    fake = output_tensor(inputs, output, loss_name)
    return real_like(inputs.target, fake), fake


class GanLoss(Loss):
    """FOMM's least-squares GAN term against the multi-scale PatchGAN discriminator.

    The generator's `forward` is sum_scales mean((1 - D(fake))^2).

    `discriminator_loss` is the discriminator's objective, sum_scales mean((1 - D(real))^2 +
    D(fake)^2), with the fake frame detached so that only the discriminator learns from it.
    Both are unweighted (FOMM's `generator_gan` and `discriminator_gan` are the config weights).
    """

    adversarial = True
    needs_discriminator = True

    def forward(self, inputs: LossInputs, output: str = "prediction") -> torch.Tensor:
        discriminator = _require_discriminator(inputs, "gan")
        _, fake = _frames(inputs, output, "gan")
        fake_out = _discriminate(discriminator, fake, inputs)
        return lsgan_generator_loss([o.prediction_map for o in fake_out.values()])

    def discriminator_loss(self, inputs: LossInputs, output: str = "prediction") -> torch.Tensor:
        discriminator = _require_discriminator(inputs, "gan")
        real, fake = _frames(inputs, output, "gan")
        fake_out = _discriminate(discriminator, fake.detach(), inputs)
        real_out = _discriminate(discriminator, real.detach(), inputs)
        return lsgan_discriminator_loss(
            [real_out[scale].prediction_map for scale in fake_out],
            [o.prediction_map for o in fake_out.values()],
        )


class FeatureMatchingLoss(Loss):
    """Discriminator feature matching: L1 between real and fake features, layer by layer.

    The sum over scales and layers of weight * mean |D_feat(real) - D_feat(fake)|.

    `layer_weights` has one weight per discriminator block (FOMM: [10, 10, 10, 10]), so the
    configured outer weight is 1. The real features carry no gradient; the term trains the
    generator only (the discriminator's gradients from it are discarded by the trainer, as in
    FOMM).
    """

    needs_discriminator = True

    def __init__(self, layer_weights: Sequence[float] = (10.0, 10.0, 10.0, 10.0)) -> None:
        super().__init__()
        if not layer_weights:
            raise ValueError("layer_weights needs one weight per discriminator block")
        self.layer_weights = tuple(float(w) for w in layer_weights)

    def forward(self, inputs: LossInputs, output: str = "prediction") -> torch.Tensor:
        discriminator = _require_discriminator(inputs, "feature_matching")
        real, fake = _frames(inputs, output, "feature_matching")
        fake_out = _discriminate(discriminator, fake, inputs)
        with torch.no_grad():
            real_out = _discriminate(discriminator, real, inputs)
        return feature_matching_loss(
            [real_out[scale].feature_maps for scale in fake_out],
            [o.feature_maps for o in fake_out.values()],
            self.layer_weights,
        )
