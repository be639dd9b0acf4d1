"""U-Net hourglass of FOMM: down blocks, then up blocks concatenated with the skips."""

from __future__ import annotations

import torch
from torch import nn

from kptoolkit.errors import FrameSizeError
from kptoolkit.nn.blocks import DownBlock2d, UpBlock2d
from kptoolkit.nn.float32 import float32_call
from kptoolkit.nn.layout import in_layout_of


def level_width(block_expansion: int, max_features: int, level: int) -> int:
    """Channels at hourglass depth `level`: block_expansion * 2**level, capped."""
    return min(max_features, block_expansion * 2**level)


class HourglassEncoder(nn.Module):
    """`num_blocks` down blocks; returns the input and every block's output (the skips)."""

    def __init__(
        self, block_expansion: int, in_features: int, num_blocks: int = 3, max_features: int = 256
    ) -> None:
        super().__init__()
        widths = [in_features] + [
            level_width(block_expansion, max_features, i + 1) for i in range(num_blocks)
        ]
        self.down_blocks = nn.ModuleList(
            DownBlock2d(widths[i], widths[i + 1]) for i in range(num_blocks)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class HourglassDecoder(nn.Module):
    """`num_blocks` up blocks, each followed by concatenation with the matching skip."""

    def __init__(
        self, block_expansion: int, in_features: int, num_blocks: int = 3, max_features: int = 256
    ) -> None:
        super().__init__()
        blocks = []
        for level in reversed(range(num_blocks)):
            width = level_width(block_expansion, max_features, level + 1)
            in_width = width if level == num_blocks - 1 else 2 * width
            blocks.append(UpBlock2d(in_width, level_width(block_expansion, max_features, level)))
        self.up_blocks = nn.ModuleList(blocks)
        self.out_filters = block_expansion + in_features

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor:
        skips = list(skips)
        out = skips.pop()
        for block in self.up_blocks:
            out = torch.cat([block(out), skips.pop()], dim=1)
        return out


class Hourglass(nn.Module):
    """Encoder + decoder; output has `block_expansion + in_features` channels at input size."""

    def __init__(
        self, block_expansion: int, in_features: int, num_blocks: int = 3, max_features: int = 256
    ) -> None:
        super().__init__()
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        self.encoder = HourglassEncoder(block_expansion, in_features, num_blocks, max_features)
        self.decoder = HourglassDecoder(block_expansion, in_features, num_blocks, max_features)
        self.num_blocks = num_blocks
        self.out_filters = self.decoder.out_filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        multiple = 2**self.num_blocks
        if x.shape[-2] % multiple or x.shape[-1] % multiple:
            raise FrameSizeError(
                f"hourglass with {self.num_blocks} blocks needs height and width divisible by "
                f"{multiple}, got {tuple(x.shape[-2:])}; choose data.frame_size (or the "
                "network's scale_factor / num_blocks) to fit"
            )
        if self.num_blocks:
            # in the layout of the first kernel: the skip concatenations then keep it too
            x = in_layout_of(x, self.encoder.down_blocks[0].conv.weight)
        return self.decoder(self.encoder(x))


class HeadHourglass(Hourglass):
    """An hourglass followed by a 3x3 convolution to `out_features` maps (`decoder.conv`)."""

    def __init__(
        self,
        block_expansion: int,
        in_features: int,
        out_features: int,
        num_blocks: int,
        max_features: int,
    ) -> None:
        super().__init__(block_expansion, in_features, num_blocks, max_features)
        self.decoder.conv = nn.Conv2d(self.out_filters, out_features, 3, padding=1)
        self.out_filters = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return float32_call(self.decoder.conv, super().forward(x))
