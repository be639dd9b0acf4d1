"""TPSMM's inpainting network: encode the source, warp every encoder level with the flow, mask
each by its occlusion map, decode with residual blocks and skips, and blend the decoded image
with the warped source by the finest occlusion map.

Published layout (three down blocks): `first`, `down_blocks.{0,1,2}`, `up_blocks.{0,1,2}`,
`resblock.{0..5}` (two per level), `final`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kptoolkit_tpsmm.blocks import ConvNormReLU, Down, Residual, Up, level_width

LEVELS = 3


def warp(features: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample `features` (B,C,H,W) at `flow` (B,h,w,2), resized bilinearly to (H,W) if needed;
    float32 out."""
    height, width = features.shape[-2:]
    if tuple(flow.shape[1:3]) != (height, width):
        flow = F.interpolate(
            flow.permute(0, 3, 1, 2), size=(height, width), mode="bilinear", align_corners=True
        ).permute(0, 2, 3, 1)
    # in float32 (the flow's precision), whatever autocast gives the features
    return F.grid_sample(features.float(), flow.float(), align_corners=True)


class InpaintingNetwork(nn.Module):
    """Source frame + dense motion -> predicted driving frame (and warped feature maps)."""

    def __init__(
        self, num_channels: int = 3, block_expansion: int = 64, max_features: int = 512
    ) -> None:
        super().__init__()
        if max_features != block_expansion * 2**LEVELS:
            raise ValueError(
                f"the inpainting network needs max_features = 8 * block_expansion, got "
                f"{max_features} and {block_expansion}"
            )
        self.first = ConvNormReLU(num_channels, block_expansion, kernel_size=7)
        widths = [level_width(block_expansion, max_features, i) for i in range(LEVELS + 1)]
        self.down_blocks = nn.ModuleList(Down(widths[i], widths[i + 1]) for i in range(LEVELS))
        ins = [max_features, max_features, max_features // 2]
        outs = [max_features // 2, max_features // 4, max_features // 8]
        self.up_blocks = nn.ModuleList(Up(i, o) for i, o in zip(ins, outs, strict=True))
        self.resblock = nn.ModuleList(Residual(ins[i // 2]) for i in range(2 * LEVELS))
        self.final = nn.Conv2d(block_expansion, num_channels, kernel_size=7, padding=3)

    def encode(self, frame: torch.Tensor) -> list[torch.Tensor]:
        """Every encoder level, full resolution first."""
        levels = [self.first(frame)]
        for block in self.down_blocks:
            levels.append(block(levels[-1]))
        return levels

    def forward(self, source: torch.Tensor, motion: dict) -> dict:
        """`motion`: the dense motion network's outputs (flow and four occlusion maps)."""
        flow, masks = motion["deformation"], motion["occlusion_maps"]
        levels = self.encode(source)
        out = warp(levels[-1], flow) * masks[0]
        # the warp loss compares these (from detached features and masks: only the flow learns)
        warped_maps = [warp(levels[-1].detach(), flow) * masks[0].detach()]
        skip = out
        for i in range(LEVELS):
            out = self.resblock[2 * i + 1](self.resblock[2 * i](out))
            out = self.up_blocks[i](out)
            level = levels[-(i + 2)]
            skip = warp(level, flow) * masks[i + 1]
            warped_maps.append(warp(level.detach(), flow) * masks[i + 1].detach())
            if i < LEVELS - 1:
                out = torch.cat([out, skip], dim=1)
        finest = masks[-1]
        deformed = warp(source, flow)
        out = out * (1 - finest) + skip
        out = torch.sigmoid(self.final(out).float())
        prediction = out * (1 - finest) + deformed.float() * finest
        return {"prediction": prediction, "deformed": deformed, "warped_maps": warped_maps}

    @torch.no_grad()
    def driving_maps(self, driving: torch.Tensor, masks: list[torch.Tensor]) -> list[torch.Tensor]:
        """The driving frame's encoder levels masked by the occlusion maps (finest first): the warp
        loss's targets, without gradients as published."""
        levels = self.encode(driving)
        return [level * mask for level, mask in zip(levels, reversed(masks), strict=True)]
