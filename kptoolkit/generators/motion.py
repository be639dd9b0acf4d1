"""Pure tensor functions of first-order motion: keypoint Gaussians, sparse motions, warping."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kptoolkit.nn.float32 import float32_op
from kptoolkit.nn.grid import make_coordinate_grid


@float32_op
def keypoint_gaussians(
    keypoints: torch.Tensor, height: int, width: int, variance: float
) -> torch.Tensor:
    """exp(-0.5 |z - kp|^2 / variance) for each (B,K,2) keypoint on an (h, w) grid -> (B,K,h,w)."""
    grid = make_coordinate_grid(height, width, dtype=keypoints.dtype, device=keypoints.device)
    offsets = grid.view(1, 1, height, width, 2) - keypoints.view(*keypoints.shape[:2], 1, 1, 2)
    return torch.exp(-0.5 * (offsets**2).sum(dim=-1) / variance)


def heatmap_difference(
    kp_driving: torch.Tensor, kp_source: torch.Tensor, height: int, width: int, variance: float
) -> torch.Tensor:
    """G_driving - G_source per keypoint, with a zero background channel first -> (B,K+1,h,w)."""
    difference = keypoint_gaussians(kp_driving, height, width, variance) - keypoint_gaussians(
        kp_source, height, width, variance
    )
    background = torch.zeros_like(difference[:, :1])
    return torch.cat([background, difference], dim=1)


@float32_op
def sparse_motions(
    kp_driving: torch.Tensor,
    kp_source: torch.Tensor,
    height: int,
    width: int,
    jac_driving: torch.Tensor | None = None,
    jac_source: torch.Tensor | None = None,
) -> torch.Tensor:
    """Identity plus T_k(z) = kp_s + J_s J_d^-1 (z - kp_d) per keypoint -> (B,K+1,h,w,2)."""
    batch, num_kp = kp_driving.shape[:2]
    grid = make_coordinate_grid(height, width, dtype=kp_driving.dtype, device=kp_driving.device)
    offsets = grid.view(1, 1, height, width, 2) - kp_driving.view(batch, num_kp, 1, 1, 2)
    if jac_driving is not None and jac_source is not None:
        jacobian = jac_source @ torch.linalg.inv(jac_driving)  # (B,K,2,2)
        offsets = torch.einsum("bkij,bkhwj->bkhwi", jacobian, offsets)
    to_source = offsets + kp_source.view(batch, num_kp, 1, 1, 2)
    identity = grid.view(1, 1, height, width, 2).expand(batch, 1, height, width, 2)
    return torch.cat([identity, to_source], dim=1)


@float32_op
def warp(image: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Sample (B,C,H,W) at a (B,h,w,2) grid of (x, y) in [-1, 1] (pixel-centre convention)."""
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


@float32_op
def resize_flow(flow: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear resize of a (B,h,w,2) sampling grid to (B,height,width,2).

    Grids hold pixel-centre coordinates (-1 and 1 are the first and last pixel centres), so the
    resize uses align_corners=True: an identity grid stays an identity grid. (FOMM resizes with
    align_corners=False, which bends the border; at its published settings the feature warp
    needs no resize, so official checkpoints are unaffected.)
    """
    if tuple(flow.shape[1:3]) == (height, width):
        return flow
    resized = F.interpolate(
        flow.permute(0, 3, 1, 2), size=(height, width), mode="bilinear", align_corners=True
    )
    return resized.permute(0, 2, 3, 1)
