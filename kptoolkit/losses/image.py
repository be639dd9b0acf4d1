"""Losses that compare a generated frame with the real one: pyramids of L1 and VGG19 features,
SSIM and LPIPS, plus the perturbed-mask correction term."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kptoolkit.errors import CompatibilityError, ConfigError
from kptoolkit.losses.base import Loss, LossInputs, output_tensor
from kptoolkit.losses.pretrained import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    VGG19_SLICES,
    build_lpips,
    require_weights,
    vgg19_features,
)
from kptoolkit.nn.anti_alias import AntiAliasDownscale

PAPER_SCALES = (1.0, 0.5, 0.25, 0.125)
PAPER_LAYER_WEIGHTS = (10.0, 10.0, 10.0, 10.0, 10.0)
VGG19_MIN_SIZE = 16  # four 2x2 poolings before relu5_1


class ImagePyramid(nn.Module):
    """Anti-aliased downscalings of an image at each scale (1 keeps it as it is)."""

    def __init__(self, scales: Sequence[float], channels: int = 3) -> None:
        super().__init__()
        if not scales:
            raise ValueError("a pyramid needs at least one scale")
        self.scales = tuple(float(s) for s in scales)
        self.downs = nn.ModuleList(AntiAliasDownscale(channels, s) for s in self.scales)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        return [down(image) for down in self.downs]


class L1Pyramid(Loss):
    """Mean absolute pixel difference, averaged over an anti-aliased image pyramid."""

    def __init__(self, scales: Sequence[float] = PAPER_SCALES) -> None:
        super().__init__()
        self.pyramid = ImagePyramid(scales)

    def forward(self, inputs: LossInputs, output: str) -> torch.Tensor:
        fake = self.pyramid(output_tensor(inputs, output, "l1_pyramid"))
        real = self.pyramid(inputs.target)
        return torch.stack([(f - r).abs().mean() for f, r in zip(fake, real, strict=True)]).mean()


class VGG19Features(nn.Module):
    """Frozen VGG19 activations relu1_1 ... relu5_1 of ImageNet-normalised images."""

    def __init__(self, weights: str) -> None:
        super().__init__()
        features = vgg19_features(weights)
        self.slices = nn.ModuleList(features[a:b] for a, b in VGG19_SLICES)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)

    def train(self, mode: bool = True) -> VGG19Features:
        """Stay in eval mode: the feature extractor is fixed."""
        return super().train(False)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        x = (image - self.mean) / self.std
        outs = []
        for block in self.slices:
            x = block(x)
            outs.append(x)
        return outs


def feature_distance(
    fake: Sequence[torch.Tensor],
    real: Sequence[torch.Tensor],
    features: nn.Module,
    layer_weights: Sequence[float],
    relative: bool = False,
) -> torch.Tensor:
    """Summed over the pyramid's scales and the network's layers: the weighted mean absolute
    difference of `features` of the fake and real images (the real ones without gradients);
    `relative` divides each layer's by the real activations' mean magnitude."""
    total = fake[0].new_zeros(())
    for fake_scale, real_scale in zip(fake, real, strict=True):
        with torch.no_grad():
            real_features = features(real_scale)
        for weight, f, r in zip(layer_weights, features(fake_scale), real_features, strict=True):
            distance = (f - r).abs().mean()
            if relative:
                distance = distance / (r.abs().mean() + 1e-6)
            total = total + weight * distance
    return total


class PerceptualPyramid(Loss):
    """The papers' perceptual loss: VGG19 feature L1 (weight 10 per layer) over a pyramid.

    `weights` is a local torchvision or timm VGG19 file; "random" builds an untrained VGG19
    (not the published loss). Without it, construction fails and says what to provide.
    """

    def __init__(
        self,
        weights: str | None = None,
        scales: Sequence[float] = PAPER_SCALES,
        layer_weights: Sequence[float] = PAPER_LAYER_WEIGHTS,
    ) -> None:
        super().__init__()
        if len(layer_weights) != len(VGG19_SLICES):
            raise ValueError(f"layer_weights needs {len(VGG19_SLICES)} values (relu1_1..relu5_1)")
        self.vgg = VGG19Features(require_weights(weights, "perceptual_pyramid", "VGG19"))
        self.pyramid = ImagePyramid(scales)
        self.layer_weights = tuple(float(w) for w in layer_weights)

    def forward(self, inputs: LossInputs, output: str) -> torch.Tensor:
        fake = self.pyramid(output_tensor(inputs, output, "perceptual_pyramid"))
        real = self.pyramid(inputs.target)
        for scale, image in zip(self.pyramid.scales, fake, strict=True):
            if min(image.shape[-2:]) < VGG19_MIN_SIZE:
                fitting = [
                    s for s in self.pyramid.scales if min(inputs.target.shape[-2:]) * s >= 16
                ]
                raise ConfigError(
                    f"perceptual_pyramid: scale {scale} of a {inputs.target.shape[-1]} px frame is "
                    f"{image.shape[-1]} px, too small for VGG19 (>= {VGG19_MIN_SIZE} px); "
                    f"use params.scales: {fitting}"
                )
        return feature_distance(fake, real, self.vgg, self.layer_weights)


class SsimLoss(Loss):
    """1 - SSIM (piq, Gaussian window 11, data range 1)."""

    def __init__(self, kernel_size: int = 11, kernel_sigma: float = 1.5) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.kernel_sigma = kernel_sigma

    def forward(self, inputs: LossInputs, output: str) -> torch.Tensor:
        import piq

        fake = output_tensor(inputs, output, "ssim").clamp(0, 1)
        score = piq.ssim(
            fake,
            inputs.target.clamp(0, 1),
            kernel_size=self.kernel_size,
            kernel_sigma=self.kernel_sigma,
            data_range=1.0,
        )
        return 1 - score


class LpipsLoss(Loss):
    """LPIPS (AlexNet) distance; the backbone comes from a local file (`weights`), or "random"."""

    def __init__(self, weights: str | None = None) -> None:
        super().__init__()
        self.lpips = build_lpips(weights, "lpips loss")

    def train(self, mode: bool = True) -> LpipsLoss:
        """Stay in eval mode: the network is fixed."""
        return super().train(False)

    def forward(self, inputs: LossInputs, output: str) -> torch.Tensor:
        fake = output_tensor(inputs, output, "lpips")
        return self.lpips(fake * 2 - 1, inputs.target * 2 - 1).mean()


class MaskCorrectionLoss(Loss):
    """The perturbed-mask baseline's term: L1(refined driving mask, clean driving mask).

    Reads the extras of `perturbed_mask`'s `driving_for_training`; the paper weights it by 100
    and turns it on from the second epoch (`start_epoch: 1`; the trainer then skips the
    refinement network entirely before that epoch).
    """

    reads_extras = True

    def __init__(self, start_epoch: int = 1) -> None:
        super().__init__()
        if start_epoch < 0:
            raise ValueError(f"start_epoch must be >= 0, got {start_epoch}")
        self.start_epoch = start_epoch

    def forward(self, inputs: LossInputs, output: str) -> torch.Tensor:
        return mask_correction(inputs.extras)


def mask_correction(extras: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean |refined - clean driving mask| from the extras of `perturbed_mask`'s
    `driving_for_training`, unweighted; gradients reach the refined mask only."""
    if "refined_driving_mask" not in extras or "clean_driving_mask" not in extras:
        raise CompatibilityError(
            "mask_correction needs a masker that refines its driving mask (perturbed_mask)"
        )
    return F.l1_loss(extras["refined_driving_mask"], extras["clean_driving_mask"].detach())
