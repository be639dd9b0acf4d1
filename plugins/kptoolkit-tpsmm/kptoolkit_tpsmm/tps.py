"""Thin-plate splines: fitting them to keypoint groups, random ones, and warping with them.

Coordinates are x-y in [-1, 1] (grid_sample's convention, align_corners=True). The radial basis
is U(r^2) = r^2 log(r^2 + 1e-9) of the squared distance, as in TPSMM.
"""

from __future__ import annotations

import torch

#: the ridge TPSMM adds to the whole system matrix before solving it
RIDGE = 0.01
EPS = 1e-9


def coordinate_grid(height: int, width: int, **like: object) -> torch.Tensor:
    """(H, W, 2) grid of x-y coordinates spanning [-1, 1] (corners included)."""
    ys = torch.linspace(-1.0, 1.0, height, **like)  # type: ignore[arg-type]
    xs = torch.linspace(-1.0, 1.0, width, **like)  # type: ignore[arg-type]
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y], dim=-1)


def radial_basis(squared_distance: torch.Tensor) -> torch.Tensor:
    """U(d) = d log(d + 1e-9), d a squared distance."""
    return squared_distance * torch.log(squared_distance + EPS)


def gaussian_heatmaps(keypoints: torch.Tensor, height: int, width: int, variance: float):
    """(B, K, 2) keypoints -> (B, K, H, W) unnormalised Gaussians exp(-|x - kp|^2 / (2 var))."""
    grid = coordinate_grid(height, width, dtype=keypoints.dtype, device=keypoints.device)
    offsets = grid.view(1, 1, height, width, 2) - keypoints.view(*keypoints.shape[:2], 1, 1, 2)
    return torch.exp(-0.5 * offsets.pow(2).sum(-1) / variance)


class KeypointTPS:
    """The TPS of each keypoint group that maps `from_points` onto `to_points`.

    `from_points`, `to_points`: (B, G, N, 2). The fit solves [[U, P], [P^T, 0]] + 0.01 I for the N
    radial weights and the 3x2 affine part of each group, exactly (ridge included) as TPSMM does.
    """

    def __init__(self, from_points: torch.Tensor, to_points: torch.Tensor) -> None:
        batch, groups, count, _ = from_points.shape
        dtype = from_points.dtype
        if dtype in (torch.float16, torch.bfloat16):
            from_points, to_points = from_points.float(), to_points.float()
        squared = (from_points.unsqueeze(3) - from_points.unsqueeze(2)).pow(2).sum(-1)
        ones = torch.ones(
            batch, groups, count, 1, dtype=from_points.dtype, device=from_points.device
        )
        affine = torch.cat([from_points, ones], dim=-1)  # (B, G, N, 3)
        top = torch.cat([radial_basis(squared), affine], dim=-1)
        zeros = affine.new_zeros(batch, groups, 3, 3)
        bottom = torch.cat([affine.transpose(-1, -2), zeros], dim=-1)
        system = torch.cat([top, bottom], dim=-2)
        system = system + RIDGE * torch.eye(count + 3, dtype=system.dtype, device=system.device)
        target = torch.cat([to_points, affine.new_zeros(batch, groups, 3, 2)], dim=-2)
        solution = torch.linalg.solve(system, target)  # (B, G, N+3, 2)
        self.control_points = from_points
        self.weights = solution[..., :count, :]  # (B, G, N, 2)
        self.affine = solution[..., count:, :]  # (B, G, 3, 2): rows x, y, 1

    def warp(self, points: torch.Tensor) -> torch.Tensor:
        """(B, P, 2) points -> (B, G, P, 2), each group's spline applied."""
        points = points.to(self.weights.dtype)
        linear = points.unsqueeze(1) @ self.affine[..., :2, :] + self.affine[..., 2:, :]
        offsets = points[:, None, :, None, :] - self.control_points[:, :, None, :, :]
        basis = radial_basis(offsets.pow(2).sum(-1))  # (B, G, P, N)
        return linear + basis @ self.weights

    def grid(self, height: int, width: int) -> torch.Tensor:
        """(B, G, H, W, 2): where each output pixel samples from (a grid_sample grid)."""
        batch, groups = self.weights.shape[:2]
        grid = coordinate_grid(height, width, dtype=self.weights.dtype, device=self.weights.device)
        flat = grid.view(1, -1, 2).expand(batch, -1, -1)
        return self.warp(flat).view(batch, groups, height, width, 2)


class RandomTPS:
    """A random TPS for the equivariance loss: affine I + N(0, sigma_affine) plus radial weights
    N(0, sigma_tps) on a points_tps x points_tps control grid, shared by x and y as in TPSMM."""

    def __init__(
        self,
        batch: int,
        sigma_affine: float = 0.05,
        sigma_tps: float = 0.005,
        points_tps: int = 5,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        noise = torch.randn(batch, 2, 3, generator=generator) * sigma_affine
        self.theta = (noise + torch.eye(2, 3)).to(device)
        self.control_points = coordinate_grid(points_tps, points_tps).view(-1, 2).to(device)
        weights = torch.randn(batch, 1, points_tps**2, generator=generator) * sigma_tps
        self.weights = weights.to(device)

    def warp(self, points: torch.Tensor) -> torch.Tensor:
        """(B, P, 2) -> (B, P, 2)."""
        theta = self.theta.to(points.dtype)
        linear = points @ theta[:, :, :2].transpose(1, 2) + theta[:, :, 2].unsqueeze(1)
        offsets = points.unsqueeze(2) - self.control_points.to(points.dtype).view(1, 1, -1, 2)
        basis = radial_basis(offsets.pow(2).sum(-1))  # (B, P, M)
        return linear + (basis * self.weights.to(points.dtype)).sum(-1, keepdim=True)

    def grid(self, height: int, width: int) -> torch.Tensor:
        """(B, H, W, 2) sampling grid of the transform."""
        batch = self.theta.shape[0]
        grid = coordinate_grid(height, width, dtype=self.theta.dtype, device=self.theta.device)
        return self.warp(grid.view(1, -1, 2).expand(batch, -1, -1)).view(batch, height, width, 2)
