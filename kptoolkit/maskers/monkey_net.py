"""Monkey-Net's keypoint detector as a trainable masker: Gaussian keypoints (mean, covariance).

An hourglass predicts K heatmaps; a spatial softmax (temperature 0.1) turns each into a
distribution over the frame, whose mean is the keypoint and whose covariance (the 'matrix'
variance of Monkey-Net's configs) describes its extent. The covariance is rescaled so that its
smallest singular value is at least `clip_variance`. There are no jacobians.

Parameter names and shapes are those of the `kp_detector` entry of Monkey-Net's checkpoints
(5-D (1,3,3) video kernels, `kptoolkit.nn.video_kernels`); a frame is processed as a one-frame
video. Unlike FOMM's shared frozen detector, this masker trains with the generator.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from kptoolkit.maskers.base import Masker
from kptoolkit.nn.float32 import float32_op
from kptoolkit.nn.grid import make_coordinate_grid
from kptoolkit.nn.hourglass import HeadHourglass
from kptoolkit.nn.video_kernels import with_frame_kernels
from kptoolkit.registry.presets import CPU64, MICRO, PAPER, Preset
from kptoolkit.structure import Structure

#: added to every softmax probability before the moments (Monkey-Net's guard against a
#: degenerate, singular covariance)
HEATMAP_EPS = 1e-7


def smallest_singular_value(matrices: torch.Tensor) -> torch.Tensor:
    """The smallest singular value of each (..., 2, 2) matrix -> (...), in closed form.

    With s = |A|_F^2 and d = det A, the squared singular values are (s +- sqrt(s^2 - 4 d^2)) / 2;
    the smaller one is computed as 2 d^2 / (s + sqrt(s^2 - 4 d^2)), which does not cancel.
    """
    squares = (matrices**2).sum(dim=(-2, -1))
    det = matrices[..., 0, 0] * matrices[..., 1, 1] - matrices[..., 0, 1] * matrices[..., 1, 0]
    root = torch.sqrt((squares**2 - 4 * det**2).clamp_min(0.0))
    return det.abs() * torch.sqrt(2 / (squares + root).clamp_min(1e-30))


@float32_op
def heatmap_moments(
    heatmaps: torch.Tensor, clip_variance: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,K,h,w) probability maps -> keypoints (B,K,2) and covariances (B,K,2,2).

    Each map (plus `HEATMAP_EPS` per pixel) weighs the pixel-centre coordinates of the [-1, 1]
    grid: the mean is the keypoint, sum p (z - mean)(z - mean)^T its covariance; with
    `clip_variance`, a covariance whose smallest singular value is below it is scaled up to it.
    """
    height, width = heatmaps.shape[-2:]
    grid = make_coordinate_grid(height, width, dtype=heatmaps.dtype, device=heatmaps.device)
    weights = (heatmaps + HEATMAP_EPS).unsqueeze(-1)  # (B,K,h,w,1)
    mean = (weights * grid).sum(dim=(2, 3))
    offsets = grid - mean[:, :, None, None, :]  # (B,K,h,w,2)
    covariance = torch.einsum("bkhw,bkhwi,bkhwj->bkij", weights.squeeze(-1), offsets, offsets)
    if clip_variance:
        smallest = smallest_singular_value(covariance)
        scale = smallest.clamp_min(clip_variance) / smallest.clamp_min(1e-12)
        covariance = covariance * scale[..., None, None]
    return mean, covariance


class MonkeyNetKeypoints(Masker):
    """Monkey-Net's keypoint detector: keypoints and their covariances (no mask, no jacobians)."""

    provides: ClassVar[frozenset[str]] = frozenset({"keypoints", "covariances"})
    supports_relative: ClassVar[bool] = True
    needs_detector: ClassVar[bool] = False
    #: the whole state dict is the official `kp_detector` entry
    official_entries: ClassVar[dict[str, str]] = {"": "kp_detector"}
    presets: ClassVar[Mapping[str, Preset]] = {
        PAPER: Preset(),
        CPU64: Preset(params={"block_expansion": 16, "max_features": 128, "num_blocks": 4}),
        MICRO: Preset(params={"block_expansion": 8, "max_features": 32, "num_blocks": 3}),
    }

    def __init__(
        self,
        num_kp: int = 10,
        num_channels: int = 3,
        block_expansion: int = 32,
        max_features: int = 1024,
        num_blocks: int = 5,
        temperature: float = 0.1,
        clip_variance: float | None = 0.001,
        scale_factor: float = 1.0,
    ) -> None:
        super().__init__()
        if num_kp < 1:
            raise ValueError(f"num_kp must be >= 1, got {num_kp}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.channels = 0
        self.num_kp = num_kp
        self.temperature = temperature
        self.clip_variance = clip_variance
        self.scale_factor = scale_factor
        self.predictor = with_frame_kernels(
            HeadHourglass(block_expansion, num_channels, num_kp, num_blocks, max_features)
        )

    @classmethod
    def mask_channels_for(cls, params: Mapping[str, Any]) -> int:
        """None: keypoints and covariances, no mask."""
        return 0

    def heatmaps(self, frame: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) frames -> (B,K,h,w) spatial-softmax heatmaps (each sums to 1)."""
        if self.scale_factor != 1:
            frame = F.interpolate(frame, scale_factor=self.scale_factor, mode="nearest")
        logits = self.predictor(frame).float()
        flat = F.softmax(logits.flatten(2) / self.temperature, dim=2)
        return flat.view_as(logits)

    def forward(self, frame: torch.Tensor) -> Structure:
        keypoints, covariances = heatmap_moments(self.heatmaps(frame), self.clip_variance)
        return Structure(keypoints=keypoints, covariances=covariances)

    def from_keypoints(
        self, keypoints: torch.Tensor, jacobians: torch.Tensor | None, reference: Structure
    ) -> Structure:
        """The structure of (already normalised) keypoints; `relative_structure` keeps the
        driving covariances (Monkey-Net's transfer with adapt_variance off)."""
        return Structure(keypoints=keypoints, covariances=reference.covariances)
