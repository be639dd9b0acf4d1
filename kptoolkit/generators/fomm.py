"""The FOMM baseline: dense motion from keypoints and jacobians, occlusion-aware generation.

Dense motion (at `scale_factor` of the frame size): per keypoint, the difference of driving and
source Gaussians (variance 0.01) with a zero background channel, the K+1 sparse motions (identity
and first-order T_k), and the source deformed by each; an hourglass on those (K+1)*(C+1)
channels predicts K+1 softmax masks that blend the sparse motions into one dense flow, and a
sigmoid occlusion map. The generator encodes the source, warps its features with the flow,
multiplies by the occlusion map, and decodes. Parameter names follow the official FOMM
checkpoints (`generator` entry of `taichi-cpk.pth.tar`).

`blend_warped_source=True` (off in the published recipe) ends the way TPSMM's generator does:
the decoded frame is blended with the source warped at full size by the occlusion map
(upsampled), `decoded * (1 - occlusion) + warped * occlusion`, so where the flow is right the
pixels pass through unblurred and the decoder only fills what the warp cannot show. It adds no
parameters (official checkpoints load either way).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from kptoolkit.generators.base import Generator
from kptoolkit.generators.motion import heatmap_difference, resize_flow, sparse_motions, warp
from kptoolkit.nn.anti_alias import AntiAliasDownscale
from kptoolkit.nn.blocks import DownBlock2d, SameBlock2d, UpBlock2d, residual_stack
from kptoolkit.nn.float32 import float32_call
from kptoolkit.nn.hourglass import Hourglass, level_width
from kptoolkit.nn.layout import in_layout_of
from kptoolkit.registry.presets import CPU64, MICRO, PAPER, Preset, loss_term
from kptoolkit.structure import Structure


class DenseMotionNetwork(nn.Module):
    """Keypoints (and jacobians) of source and driving -> dense flow and occlusion map."""

    def __init__(
        self,
        num_kp: int = 10,
        num_channels: int = 3,
        block_expansion: int = 64,
        max_features: int = 1024,
        num_blocks: int = 5,
        scale_factor: float = 0.25,
        kp_variance: float = 0.01,
        estimate_occlusion_map: bool = True,
    ) -> None:
        super().__init__()
        self.num_kp = num_kp
        self.kp_variance = kp_variance
        in_features = (num_kp + 1) * (num_channels + 1)
        self.hourglass = Hourglass(block_expansion, in_features, num_blocks, max_features)
        self.mask = nn.Conv2d(self.hourglass.out_filters, num_kp + 1, kernel_size=7, padding=3)
        self.occlusion: nn.Conv2d | None = None
        if estimate_occlusion_map:
            self.occlusion = nn.Conv2d(self.hourglass.out_filters, 1, kernel_size=7, padding=3)
        self.down = AntiAliasDownscale(num_channels, scale_factor) if scale_factor != 1 else None

    def forward(
        self, source: torch.Tensor, driving: Structure, source_structure: Structure
    ) -> dict[str, torch.Tensor]:
        """Dense `deformation` (B,h,w,2), `occlusion_map` (B,1,h,w), masks and deformed copies."""
        small = self.down(source) if self.down is not None else source
        batch, channels, height, width = small.shape
        kp_d, kp_s = driving.keypoints, source_structure.keypoints
        heatmaps = heatmap_difference(kp_d, kp_s, height, width, self.kp_variance)
        motions = sparse_motions(
            kp_d, kp_s, height, width, driving.jacobians, source_structure.jacobians
        )
        copies = small.unsqueeze(1).expand(batch, self.num_kp + 1, channels, height, width)
        deformed = warp(
            copies.reshape(-1, channels, height, width), motions.reshape(-1, height, width, 2)
        ).view(batch, self.num_kp + 1, channels, height, width)
        features = torch.cat([heatmaps.unsqueeze(2), deformed], dim=2)
        features = features.view(batch, -1, height, width)
        prediction = self.hourglass(features)
        masks = F.softmax(float32_call(self.mask, prediction), dim=1)
        deformation = (motions * masks.unsqueeze(-1)).sum(dim=1)
        out = {"motion_masks": masks, "sparse_deformed": deformed, "deformation": deformation}
        if self.occlusion is not None:
            out["occlusion_map"] = torch.sigmoid(float32_call(self.occlusion, prediction))
        return out


class FommGenerator(Generator):
    """FOMM's occlusion-aware generator driven by keypoints and jacobians (First Order Motion)."""

    requires: ClassVar[frozenset[str]] = frozenset({"keypoints", "jacobians"})
    natural_masker: ClassVar[str] = "fomm_keypoints"
    baseline_label: ClassVar[str | None] = "FOMM"
    warped_output: ClassVar[str | None] = "deformed"
    #: FOMM trains its detector with an equivariance term; the paper weighs it against a VGG
    #: perceptual loss of about 100, the CPU presets against an L1 pyramid about 2,000x smaller
    presets: ClassVar[Mapping[str, Preset]] = {
        PAPER: Preset(losses=(loss_term("equivariance", outputs=[]),)),
        CPU64: Preset(
            params={
                "block_expansion": 16,
                "max_features": 128,
                "num_bottleneck_blocks": 3,
                "dense_block_expansion": 16,
                "dense_max_features": 128,
                "dense_num_blocks": 4,
                "scale_factor": 0.5,
            },
            losses=(loss_term("equivariance", 1e-3, outputs=[]),),
        ),
        MICRO: Preset(
            params={
                "block_expansion": 8,
                "max_features": 32,
                "num_bottleneck_blocks": 1,
                "dense_block_expansion": 8,
                "dense_max_features": 32,
                "dense_num_blocks": 3,
            },
            losses=(loss_term("equivariance", 1e-3, outputs=[]),),
        ),
    }

    @classmethod
    def requires_for(cls, params: Mapping[str, Any]) -> frozenset[str]:
        """Keypoints, and jacobians unless the detector estimates none (`estimate_jacobian`)."""
        if params.get("estimate_jacobian", True):
            return cls.requires
        return frozenset({"keypoints"})

    def __init__(
        self,
        num_kp: int = 10,
        num_channels: int = 3,
        block_expansion: int = 64,
        max_features: int = 512,
        num_down_blocks: int = 2,
        num_bottleneck_blocks: int = 6,
        estimate_occlusion_map: bool = True,
        estimate_jacobian: bool = True,
        dense_block_expansion: int = 64,
        dense_max_features: int = 1024,
        dense_num_blocks: int = 5,
        scale_factor: float = 0.25,
        kp_variance: float = 0.01,
        blend_warped_source: bool = False,
    ) -> None:
        super().__init__()
        if blend_warped_source and not estimate_occlusion_map:
            raise ValueError(
                "fomm: blend_warped_source=True blends by the occlusion map, so it needs "
                "estimate_occlusion_map=True"
            )
        self.blend_warped_source = blend_warped_source
        self.requires = self.requires_for({"estimate_jacobian": estimate_jacobian})
        self.num_kp = num_kp
        self.dense_motion_network = DenseMotionNetwork(
            num_kp,
            num_channels,
            dense_block_expansion,
            dense_max_features,
            dense_num_blocks,
            scale_factor,
            kp_variance,
            estimate_occlusion_map,
        )
        self.first = SameBlock2d(num_channels, block_expansion, kernel_size=7)
        widths = [level_width(block_expansion, max_features, i) for i in range(num_down_blocks + 1)]
        self.down_blocks = nn.ModuleList(
            DownBlock2d(widths[i], widths[i + 1]) for i in range(num_down_blocks)
        )
        self.up_blocks = nn.ModuleList(
            UpBlock2d(widths[i + 1], widths[i]) for i in reversed(range(num_down_blocks))
        )
        self.bottleneck = residual_stack(widths[-1], num_bottleneck_blocks)
        self.final = nn.Conv2d(block_expansion, num_channels, kernel_size=7, padding=3)

    def forward(
        self, source: torch.Tensor, source_structure: Structure, driving_structure: Structure
    ) -> dict[str, torch.Tensor]:
        if source_structure.keypoints is None or driving_structure.keypoints is None:
            raise ValueError("fomm needs keypoints in both the source and driving structure")
        motion = self.dense_motion_network(source, driving_structure, source_structure)
        features = self.first(source)
        for block in self.down_blocks:
            features = block(features)
        height, width = features.shape[-2:]
        features = warp(features, resize_flow(motion["deformation"], height, width))
        occlusion = motion.get("occlusion_map")
        if occlusion is not None:
            if tuple(occlusion.shape[-2:]) != (height, width):
                occlusion = F.interpolate(
                    occlusion, size=(height, width), mode="bilinear", align_corners=False
                )
            features = features * occlusion
        # grid_sample's output is contiguous: back to the kernels' layout
        features = in_layout_of(features, self.final.weight)
        features = self.bottleneck(features)
        for block in self.up_blocks:
            features = block(features)
        # pixels: the sigmoid in float32 (bfloat16 would keep 8 bits); coordinates and blending
        # masks above come from float32 heads
        prediction = torch.sigmoid(self.final(features).float())
        deformed = warp(source, resize_flow(motion["deformation"], *source.shape[-2:]))
        if self.blend_warped_source:
            full = F.interpolate(
                motion["occlusion_map"].float(),
                size=tuple(source.shape[-2:]),
                mode="bilinear",
                align_corners=False,
            )
            prediction = prediction * (1 - full) + deformed.float() * full
        return {"prediction": prediction, "deformed": deformed, **motion}
