"""Anti-aliased downscaling: Gaussian blur, then keep every (1/scale)-th pixel (FOMM convention)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def inverse_scale(scale: float) -> int:
    """The integer stride 1/scale, rejecting scales that are not 1/n."""
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    stride = round(1 / scale)
    if abs(stride * scale - 1) > 1e-6:
        raise ValueError(f"scale must be 1/n for an integer n (0.5, 0.25, ...), got {scale}")
    return stride


def anti_alias_kernel(scale: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The normalised 2D Gaussian used before subsampling by `scale` (13x13, sigma 1.5 at 0.25)."""
    sigma = (1 / scale - 1) / 2
    size = 2 * round(sigma * 4) + 1
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    gauss_1d = torch.exp(-(coords**2) / (2 * sigma**2))
    kernel = torch.outer(gauss_1d, gauss_1d)
    return (kernel / kernel.sum()).to(dtype)


def anti_alias_downscale(x: torch.Tensor, weight: torch.Tensor, stride: int) -> torch.Tensor:
    """Depthwise blur of `x` (B,C,H,W) with `weight` (C,1,k,k), sampled every `stride` pixels."""
    size = weight.shape[-1]
    weight = weight.to(x.dtype)  # a bfloat16 / float16 input (mixed precision) keeps its type
    if size % 2 == 0:  # FOMM pads one pixel less on the far side for even kernels
        x = F.pad(x, (size // 2, size // 2 - 1, size // 2, size // 2 - 1))
        return F.conv2d(x, weight, stride=stride, groups=x.shape[1])
    return F.conv2d(x, weight, stride=stride, padding=size // 2, groups=x.shape[1])


class AntiAliasDownscale(nn.Module):
    """Module form of `anti_alias_downscale`; its kernel is the buffer `weight` (C,1,k,k)."""

    def __init__(self, channels: int, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.stride = inverse_scale(scale)
        kernel = anti_alias_kernel(scale)
        self.register_buffer("weight", kernel.expand(channels, 1, *kernel.shape).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x
        return anti_alias_downscale(x, self.weight, self.stride)
