"""Pure tensor functions of the FOMM keypoint detector: softmax heatmaps, keypoints, jacobians."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kptoolkit.nn.float32 import float32_op
from kptoolkit.nn.grid import make_coordinate_grid


@float32_op
def spatial_softmax(logits: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Softmax of (B,K,h,w) logits / temperature over each channel's pixels."""
    batch, channels, height, width = logits.shape
    flat = F.softmax(logits.reshape(batch, channels, -1) / temperature, dim=2)
    return flat.reshape(batch, channels, height, width)


@float32_op
def keypoints_from_heatmaps(heatmaps: torch.Tensor) -> torch.Tensor:
    """Expected (x, y) in [-1, 1] of each (B,K,h,w) heatmap -> (B,K,2)."""
    grid = make_coordinate_grid(*heatmaps.shape[-2:], dtype=heatmaps.dtype, device=heatmaps.device)
    return torch.einsum("bkhw,hwc->bkc", heatmaps, grid)


@float32_op
def jacobians_from_maps(heatmaps: torch.Tensor, jacobian_maps: torch.Tensor) -> torch.Tensor:
    """Heatmap-weighted sums of (B,4K or 4,h,w) jacobian maps -> (B,K,2,2)."""
    batch, num_kp = heatmaps.shape[:2]
    maps = jacobian_maps.reshape(batch, -1, 4, *jacobian_maps.shape[-2:])
    weighted = (heatmaps.unsqueeze(2) * maps).sum(dim=(-2, -1))  # maps broadcast if shared
    return weighted.reshape(batch, num_kp, 2, 2)
