"""Coordinate grids in the normalised [-1, 1] convention of `grid_sample`."""

from __future__ import annotations

import torch


def make_coordinate_grid(
    height: int, width: int, dtype: torch.dtype = torch.float32, device: torch.device | None = None
) -> torch.Tensor:
    """(H, W, 2) grid of (x, y); x and y run linearly from -1 (first pixel centre) to 1 (last)."""
    xs = torch.linspace(-1.0, 1.0, width, dtype=dtype, device=device)
    ys = torch.linspace(-1.0, 1.0, height, dtype=dtype, device=device)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y], dim=-1)
