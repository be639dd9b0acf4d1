"""Convolution blocks of TPSMM's networks: instance-normalised (affine), ReLU, nearest upsampling.

Submodule names (`conv`, `norm`, `conv1`, `norm1`, ...) match the published checkpoints.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kptoolkit.nn.hourglass import level_width


def _norm(channels: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(channels, affine=True)


class ConvNormReLU(nn.Module):
    """conv -> instance norm -> ReLU, same resolution."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.norm = _norm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x)))


class Down(ConvNormReLU):
    """conv -> norm -> ReLU, then 2x2 average pooling (half resolution)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(super().forward(x), 2)


class Up(ConvNormReLU):
    """Nearest 2x upsampling, then conv -> norm -> ReLU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.interpolate(x, scale_factor=2.0))


class Residual(nn.Module):
    """Pre-activation residual block: x + conv2(relu(norm2(conv1(relu(norm1(x))))))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm1 = _norm(channels)
        self.norm2 = _norm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.conv1(F.relu(self.norm1(x)))
        return x + self.conv2(F.relu(self.norm2(hidden)))


class Encoder(nn.Module):
    """`num_blocks` Down blocks; returns the input and every level's features."""

    def __init__(
        self, block_expansion: int, in_features: int, num_blocks: int, max_features: int
    ) -> None:
        super().__init__()
        widths = [in_features] + [
            level_width(block_expansion, max_features, i + 1) for i in range(num_blocks)
        ]
        self.down_blocks = nn.ModuleList(Down(widths[i], widths[i + 1]) for i in range(num_blocks))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        levels = [x]
        for block in self.down_blocks:
            levels.append(block(levels[-1]))
        return levels


class Decoder(nn.Module):
    """`num_blocks` Up blocks, each followed by concatenation with the encoder's skip."""

    def __init__(
        self, block_expansion: int, in_features: int, num_blocks: int, max_features: int
    ) -> None:
        super().__init__()
        blocks = []
        #: channels of each decoder output, deepest first, then the final one (as published)
        self.out_channels: list[int] = []
        for level in reversed(range(num_blocks)):
            width = level_width(block_expansion, max_features, level + 1)
            incoming = width if level == num_blocks - 1 else 2 * width
            self.out_channels.append(incoming)
            blocks.append(Up(incoming, level_width(block_expansion, max_features, level)))
        self.up_blocks = nn.ModuleList(blocks)
        self.out_channels.append(block_expansion + in_features)

    def forward(self, levels: list[torch.Tensor]) -> list[torch.Tensor]:
        skips = list(levels)
        out = skips.pop()
        outs = []
        for block in self.up_blocks:
            out = torch.cat([block(out), skips.pop()], dim=1)
            outs.append(out)
        return outs


class Hourglass(nn.Module):
    """U-Net; `forward` returns every decoder level (coarsest first, full resolution last)."""

    def __init__(
        self, block_expansion: int, in_features: int, num_blocks: int, max_features: int
    ) -> None:
        super().__init__()
        self.encoder = Encoder(block_expansion, in_features, num_blocks, max_features)
        self.decoder = Decoder(block_expansion, in_features, num_blocks, max_features)
        self.out_channels = self.decoder.out_channels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.decoder(self.encoder(x))
