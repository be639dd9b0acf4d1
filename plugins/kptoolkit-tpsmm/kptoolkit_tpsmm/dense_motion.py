"""TPSMM's dense motion network: K TPS transforms plus a background affine, blended per pixel
into one optical flow, and multi-resolution occlusion masks.

At `scale_factor` of the frame size: the driving-minus-source keypoint Gaussians (a zero
background channel first) and the source deformed by each of the K+1 transforms feed an
hourglass; a 7x7 head gives K+1 contribution maps (softmax, or the keypoint-dropout softmax while
training), which weight the transforms into the flow. Occlusion masks (sigmoid, 7x7 heads) come
from the last hourglass levels and from Up blocks that climb back to the frame size: four masks,
coarsest first, one per level of the inpainting network.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kptoolkit.nn.anti_alias import AntiAliasDownscale
from kptoolkit_tpsmm.blocks import Hourglass, Up
from kptoolkit_tpsmm.tps import KeypointTPS, coordinate_grid, gaussian_heatmaps

POINTS_PER_TPS = 5
OCCLUSION_MASKS = 4


def dropout_softmax(logits: torch.Tensor, p: float, generator: torch.Generator | None = None):
    """Softmax over dim 1 where each of the K TPS channels (not channel 0, the background) is
    dropped for the whole map with probability `p` (Eq. 7-8 of the paper; 1e-6 in the
    denominator as published)."""
    batch, channels = logits.shape[:2]
    keep = (torch.rand(batch, channels, generator=generator) >= p).to(logits.device, logits.dtype)
    keep[:, 0] = 1
    exp = torch.exp(logits - logits.amax(dim=1, keepdim=True)) * keep.view(batch, channels, 1, 1)
    return exp / (exp.sum(dim=1, keepdim=True) + 1e-6)


class DenseMotionNetwork(nn.Module):
    """Keypoints of source and driving (and a background affine) -> flow and occlusion masks."""

    def __init__(
        self,
        num_tps: int = 10,
        num_channels: int = 3,
        block_expansion: int = 64,
        max_features: int = 1024,
        num_blocks: int = 5,
        scale_factor: float = 0.25,
        kp_variance: float = 0.01,
    ) -> None:
        super().__init__()
        ups = round(math.log2(1 / scale_factor))
        if 2**-ups != scale_factor or ups > OCCLUSION_MASKS:
            raise ValueError(f"scale_factor must be 1, 1/2, 1/4, 1/8 or 1/16, got {scale_factor}")
        if num_blocks < OCCLUSION_MASKS - ups:
            raise ValueError(
                f"num_blocks {num_blocks} gives too few hourglass levels for "
                f"{OCCLUSION_MASKS} occlusion masks at scale_factor {scale_factor}"
            )
        self.num_tps = num_tps
        self.kp_variance = kp_variance
        self.scale_factor = scale_factor
        self.ups = ups
        if scale_factor != 1:
            self.down = AntiAliasDownscale(num_channels, scale_factor)
        in_features = num_channels * (num_tps + 1) + num_tps * POINTS_PER_TPS + 1
        self.hourglass = Hourglass(block_expansion, in_features, num_blocks, max_features)
        widths = self.hourglass.out_channels
        self.maps = nn.Conv2d(widths[-1], num_tps + 1, kernel_size=7, padding=3)
        self.up = nn.ModuleList(
            Up(widths[-1] // 2**i, widths[-1] // 2 ** (i + 1)) for i in range(ups)
        )
        heads = [widths[-1 - i] for i in reversed(range(OCCLUSION_MASKS - ups))]
        heads += [widths[-1] // 2 ** (i + 1) for i in range(ups)]
        self.occlusion = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=7, padding=3) for c in heads)

    def transformations(
        self,
        kp_source: torch.Tensor,
        kp_driving: torch.Tensor,
        height: int,
        width: int,
        background: torch.Tensor | None,
    ) -> torch.Tensor:
        """(B, K+1, h, w, 2): background (identity or affine) then the K TPS grids, each mapping
        driving coordinates to source coordinates."""
        batch = kp_source.shape[0]
        tps = KeypointTPS(
            kp_driving.reshape(batch, -1, POINTS_PER_TPS, 2),
            kp_source.reshape(batch, -1, POINTS_PER_TPS, 2),
        )
        grids = tps.grid(height, width)
        identity = coordinate_grid(height, width, dtype=grids.dtype, device=grids.device)
        identity = identity.expand(batch, 1, height, width, 2)
        if background is not None:
            matrix = background.to(grids.dtype).view(batch, 1, 1, 3, 3)
            homogeneous = torch.cat([identity, torch.ones_like(identity[..., :1])], dim=-1)
            moved = homogeneous @ matrix.transpose(-1, -2)
            identity = moved[..., :2] / moved[..., 2:]
        return torch.cat([identity, grids], dim=1)

    def forward(
        self,
        source: torch.Tensor,
        kp_source: torch.Tensor,
        kp_driving: torch.Tensor,
        background: torch.Tensor | None = None,
        dropout_p: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> dict:
        small = self.down(source) if self.scale_factor != 1 else source
        batch, channels, height, width = small.shape
        heat = gaussian_heatmaps(kp_driving, height, width, self.kp_variance)
        heat = heat - gaussian_heatmaps(kp_source, height, width, self.kp_variance)
        heat = torch.cat([heat.new_zeros(batch, 1, height, width), heat], dim=1)
        grids = self.transformations(kp_source, kp_driving, height, width, background)
        count = self.num_tps + 1
        copies = small.unsqueeze(1).expand(batch, count, channels, height, width)
        # sampling in float32: a bfloat16 grid would move pixels by up to 1/256 of the frame
        deformed = F.grid_sample(
            copies.reshape(-1, channels, height, width).float(),
            grids.reshape(-1, height, width, 2).float(),
            align_corners=True,
        ).view(batch, count, channels, height, width)
        features = torch.cat([heat.float(), deformed.reshape(batch, -1, height, width)], dim=1)
        levels = self.hourglass(features)
        logits = self.maps(levels[-1]).float()
        if dropout_p > 0:
            contributions = dropout_softmax(logits, dropout_p, generator)
        else:
            contributions = F.softmax(logits, dim=1)
        flow = (grids.float() * contributions.unsqueeze(-1)).sum(dim=1)
        masks = []
        hourglass_masks = OCCLUSION_MASKS - self.ups
        for i in range(hourglass_masks):
            masks.append(torch.sigmoid(self.occlusion[i](levels[i - hourglass_masks]).float()))
        hidden = levels[-1]
        for i, block in enumerate(self.up):
            hidden = block(hidden)
            masks.append(torch.sigmoid(self.occlusion[hourglass_masks + i](hidden).float()))
        return {
            "contribution_maps": contributions,
            "deformed_source": deformed,
            "deformation": flow,
            "occlusion_maps": masks,
        }
