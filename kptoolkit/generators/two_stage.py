"""The paper's two-stage generator: a coarse frame from the masks, then an hourglass refinement.

Stage 1 works at `scale_factor` of the frame size (64x64 for 256): [source downscaled, source
mask, driving mask] -> 7x7 conv -> residual blocks -> up blocks back to full size -> 7x7 conv ->
sigmoid: `low_res_prediction` (the name refers to its 64x64 latent). Stage 2 concatenates
[source, both masks upsampled, low_res_prediction] (the last three detached, as published) and
refines them with an hourglass -> 7x7 conv -> sigmoid: `prediction`.
Parameter names follow the official keypoint-mask checkpoints.

`source_residual=True` (off in the published recipe) makes stage 2 predict a correction to the
source instead of the frame: `prediction = sigmoid(logit(source) + refinement)`, with the last
convolution zeroed so that training starts from the copy of the source. Behind a sigmoid a
network cannot pass its input through exactly; with the residual it does by default and
spends its steps on what moved. Same parameters and shapes (official checkpoints load).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from kptoolkit.generators.base import Generator
from kptoolkit.nn.anti_alias import AntiAliasDownscale, inverse_scale
from kptoolkit.nn.blocks import SameBlock2d, UpBlock2d, residual_stack
from kptoolkit.nn.hourglass import Hourglass
from kptoolkit.nn.layout import in_layout_of
from kptoolkit.registry.presets import CPU64, MICRO, PAPER, Preset, loss_term
from kptoolkit.structure import Structure

UNUSED_OFFICIAL_PREFIXES = ("down_blocks.",)  # in official files, never used by forward
#: `source_residual`: pixels clamped to [eps, 1 - eps] before the logit (about +-6.9)
SOURCE_LOGIT_EPS = 1e-3


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize (align_corners=False) of a (B,C,h,w) mask, a no-op at the same size."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    return F.interpolate(mask, size=size, mode="bilinear", align_corners=False)


class TwoStageGenerator(Generator):
    """The keypoint-mask paper's generator: masks + source -> coarse frame -> refined frame."""

    requires: ClassVar[frozenset[str]] = frozenset({"mask"})
    #: the paper puts its image loss on both stages: the coarse frame gets its own term
    presets: ClassVar[Mapping[str, Preset]] = {
        PAPER: Preset(
            losses=(
                loss_term(
                    "perceptual_pyramid",
                    outputs=["low_res_prediction"],
                    params={
                        "weights": None,  # a local torchvision VGG19 file
                        "scales": [1, 0.5, 0.25, 0.125],
                        "layer_weights": [10, 10, 10, 10, 10],
                    },
                ),
            )
        ),
        CPU64: Preset(
            params={
                "scale_factor": 0.5,
                "features": 64,
                "num_residual_blocks": 3,
                "refine_block_expansion": 16,
                "refine_max_features": 128,
                "refine_num_blocks": 4,
            },
            losses=(
                loss_term(
                    "l1_pyramid", outputs=["low_res_prediction"], params={"scales": [1, 0.5]}
                ),
            ),
        ),
        MICRO: Preset(
            params={
                "features": 16,
                "num_residual_blocks": 2,
                "refine_block_expansion": 4,
                "refine_max_features": 16,
                "refine_num_blocks": 3,
            },
            losses=(
                loss_term(
                    "l1_pyramid", outputs=["low_res_prediction"], params={"scales": [1, 0.5]}
                ),
            ),
        ),
    }

    def __init__(
        self,
        mask_channels: int = 1,
        num_channels: int = 3,
        scale_factor: float = 0.25,
        features: int = 256,
        num_residual_blocks: int = 6,
        refine_block_expansion: int = 64,
        refine_max_features: int = 1024,
        refine_num_blocks: int = 5,
        source_residual: bool = False,
    ) -> None:
        super().__init__()
        if mask_channels < 1:
            raise ValueError(f"mask_channels must be >= 1, got {mask_channels}")
        stride = inverse_scale(scale_factor)
        num_up = round(math.log2(stride))
        if 2**num_up != stride:
            raise ValueError(f"scale_factor must be 1/2**n (0.25, 0.5, 1), got {scale_factor}")
        if features % stride:
            raise ValueError(f"features ({features}) must be divisible by 1/scale_factor")
        self.mask_channels = mask_channels
        self.scale_factor = scale_factor
        self.source_first = AntiAliasDownscale(num_channels, scale_factor) if stride > 1 else None
        self.first = SameBlock2d(num_channels + 2 * mask_channels, features, kernel_size=7)
        self.bottleneck = residual_stack(features, num_residual_blocks)
        self.up_blocks = nn.ModuleList(
            UpBlock2d(features // 2**i, features // 2 ** (i + 1)) for i in range(num_up)
        )
        self.final = nn.Conv2d(features // stride, num_channels, kernel_size=7, padding=3)
        refine_in = 2 * num_channels + 2 * mask_channels
        self.hourglass = Hourglass(
            refine_block_expansion, refine_in, refine_num_blocks, refine_max_features
        )
        self.final_hourglass = nn.Conv2d(
            self.hourglass.out_filters, num_channels, kernel_size=7, padding=3
        )
        self.source_residual = source_residual
        if source_residual:
            nn.init.zeros_(self.final_hourglass.weight)
            nn.init.zeros_(self.final_hourglass.bias)

    def adapt_state_dict(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Drop the official checkpoint's `down_blocks.*`, which its forward pass never used."""
        return {k: v for k, v in state.items() if not k.startswith(UNUSED_OFFICIAL_PREFIXES)}

    def forward(
        self, source: torch.Tensor, source_structure: Structure, driving_structure: Structure
    ) -> dict[str, torch.Tensor]:
        source_mask, driving_mask = source_structure.mask, driving_structure.mask
        if source_mask is None or driving_mask is None:
            raise ValueError("two_stage needs a mask in both the source and driving structure")
        small = self.source_first(source) if self.source_first is not None else source
        latent_size = tuple(small.shape[-2:])
        x = torch.cat(
            [small, resize_mask(source_mask, latent_size), resize_mask(driving_mask, latent_size)],
            dim=1,
        )
        x = self.bottleneck(self.first(in_layout_of(x, self.first.conv.weight)))
        for block in self.up_blocks:
            x = block(x)
        # the sigmoid in float32: under bfloat16 autocast its output would carry only 8 bits
        low_res_prediction = torch.sigmoid(self.final(x).float())

        full_size = tuple(source.shape[-2:])
        refine_input = torch.cat(
            [
                source,
                resize_mask(source_mask, full_size).detach(),
                resize_mask(driving_mask, full_size).detach(),
                low_res_prediction.detach(),
            ],
            dim=1,
        )
        refined = self.final_hourglass(self.hourglass(refine_input)).float()
        if self.source_residual:
            refined = refined + torch.logit(source.float(), eps=SOURCE_LOGIT_EPS)
        prediction = torch.sigmoid(refined)
        return {"prediction": prediction, "low_res_prediction": low_res_prediction}
