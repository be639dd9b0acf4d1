"""Pixel and perceptual metrics on (B, 3, H, W) frames in [0, 1], one value per frame."""

from __future__ import annotations

import piq
import torch

from kptoolkit.losses.pretrained import build_lpips
from kptoolkit.metrics.base import FramePairs, Metric


class L1Metric(Metric):
    """Mean absolute difference of pixel values in [0, 1]."""

    higher_is_better = False

    def frame_values(self, pairs: FramePairs) -> torch.Tensor:
        real, fake = pairs.frames("l1")
        return (fake - real).abs().flatten(1).mean(1)


class PsnrMetric(Metric):
    """Peak signal-to-noise ratio in dB (`piq.psnr`, data range 1)."""

    higher_is_better = True

    def frame_values(self, pairs: FramePairs) -> torch.Tensor:
        real, fake = pairs.frames("psnr")
        return piq.psnr(fake, real, data_range=1.0, reduction="none")


class SsimMetric(Metric):
    """Structural similarity (`piq.ssim`: 11x11 Gaussian window, data range 1)."""

    higher_is_better = True

    def frame_values(self, pairs: FramePairs) -> torch.Tensor:
        real, fake = pairs.frames("ssim")
        return piq.ssim(fake, real, data_range=1.0, reduction="none")


class LpipsMetric(Metric):
    """LPIPS (AlexNet) distance; `weights` is a local AlexNet file, or "random" (not LPIPS).

    Like the `lpips` loss, it never downloads and fails at construction without weights.
    """

    higher_is_better = False

    def __init__(self, weights: str | None = None) -> None:
        super().__init__()
        self.lpips = build_lpips(weights, "lpips metric")

    def train(self, mode: bool = True) -> LpipsMetric:
        """Stay in eval mode: the network is fixed."""
        return super().train(False)

    def frame_values(self, pairs: FramePairs) -> torch.Tensor:
        device = next(self.lpips.parameters()).device
        real, fake = pairs.frames("lpips")
        return self.lpips(fake.to(device) * 2 - 1, real.to(device) * 2 - 1).flatten()
