"""Pure tensor functions shared by the maskers (the paper's mask post-processing)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kptoolkit.nn.grid import make_coordinate_grid

MASK_PADDING = 3  # 58x58 detector heatmaps are zero-padded to 64x64
CIRCLE_VARIANCE = 0.003  # of the circles mask, in squared [-1, 1] units


def normalize_min_max(mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Rescale each sample of (B,C,H,W) to [0,1] over all its pixels and channels."""
    flat = mask.flatten(1)
    low = flat.min(dim=1).values.view(-1, *([1] * (mask.ndim - 1)))
    high = flat.max(dim=1).values.view(-1, *([1] * (mask.ndim - 1)))
    return (mask - low) / (high - low).clamp_min(eps)


def pad_mask(mask: torch.Tensor, padding: int = MASK_PADDING) -> torch.Tensor:
    """Zero-pad a (B,C,h,w) mask by `padding` pixels on every side."""
    return F.pad(mask, (padding, padding, padding, padding))


def finish_mask(mask: torch.Tensor, padding: int = MASK_PADDING) -> torch.Tensor:
    """Min-max normalise per sample, then zero-pad: the last step of every paper mask."""
    return pad_mask(normalize_min_max(mask), padding)


def heatmap_sum_mask(logits: torch.Tensor) -> torch.Tensor:
    """The paper's main mask: the sum of the K raw logit maps (B,K,h,w) -> (B,1,h+6,w+6)."""
    return finish_mask(logits.sum(dim=1, keepdim=True))


def softmax_sum_mask(heatmaps: torch.Tensor) -> torch.Tensor:
    """The softmax variant: the sum of the K spatial-softmax heatmaps -> (B,1,h+6,w+6)."""
    return finish_mask(heatmaps.sum(dim=1, keepdim=True))


def gaussian_circles(
    keypoints: torch.Tensor, height: int, width: int, variance: float = CIRCLE_VARIANCE
) -> torch.Tensor:
    """Sum over K of exp(-0.5 |z - kp|^2 / variance) on an (h, w) grid in [-1,1] -> (B,1,h,w)."""
    grid = make_coordinate_grid(height, width, dtype=keypoints.dtype, device=keypoints.device)
    offsets = grid.view(1, 1, height, width, 2) - keypoints.view(*keypoints.shape[:2], 1, 1, 2)
    circles = torch.exp(-0.5 * (offsets**2).sum(dim=-1) / variance)
    return circles.sum(dim=1, keepdim=True)


def gaussian_circles_mask(
    keypoints: torch.Tensor, height: int, width: int, variance: float = CIRCLE_VARIANCE
) -> torch.Tensor:
    """The circles mask: Gaussian circles at the keypoints, normalised and padded."""
    return finish_mask(gaussian_circles(keypoints, height, width, variance))


def all_k_mask(logits: torch.Tensor) -> torch.Tensor:
    """All K logit maps as a K-channel mask, each channel min-max normalised on its own."""
    batch, channels, height, width = logits.shape
    per_channel = normalize_min_max(logits.reshape(batch * channels, 1, height, width))
    return pad_mask(per_channel.reshape(batch, channels, height, width))
