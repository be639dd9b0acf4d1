"""The Monkey-Net baseline (Siarohin et al., CVPR 2019): motion transfer from Gaussian keypoints.

Keypoints come with covariances (`monkey_net_keypoints`). Per keypoint k, the motion module
sees the difference of the driving and source Gaussians (divided by `norm_const`) and the
source translated by the keypoint's displacement (sampled at z + kp_s - kp_d); with a
background channel (no heatmap, untranslated source) these K+1 groups go through grouped 1x1
convolutions and an hourglass that predicts K+1 softmax masks and a 2-channel correction. The
dense flow is z + sum_k mask_k (kp_s - kp_d)_k + correction. The generator encodes the source,
warps every encoder level with the flow, appends the (resized) Gaussian differences to each
level, decodes through a U-Net decoder, and refines with residual blocks to a sigmoid image.

Parameter names and 5-D (1,3,3) kernel shapes follow the `generator` entry of Monkey-Net's
official checkpoints (`kptoolkit.nn.video_kernels`); frames are processed as one-frame videos.
Warping uses `grid_sample` with pixel-centre coordinates (align_corners=True), as the official
code did under the PyTorch of its time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from kptoolkit.errors import CompatibilityError, FrameSizeError
from kptoolkit.generators.base import Generator
from kptoolkit.generators.motion import warp
from kptoolkit.nn.blocks import ResBlock2d, UpBlock2d
from kptoolkit.nn.float32 import float32_op
from kptoolkit.nn.grid import make_coordinate_grid
from kptoolkit.nn.hourglass import HeadHourglass, HourglassEncoder, level_width
from kptoolkit.nn.video_kernels import with_frame_kernels
from kptoolkit.registry.presets import CPU64, MICRO, PAPER, Preset
from kptoolkit.structure import Structure

INTERPOLATION_MODES = ("nearest", "bilinear", "trilinear")


@float32_op
def covariance_gaussians(
    keypoints: torch.Tensor, covariances: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """exp(-0.5 (z - kp)^T C^-1 (z - kp)) for (B,K,2) keypoints, (B,K,2,2) covariances on an
    (h, w) grid of pixel-centre coordinates -> (B,K,h,w)."""
    grid = make_coordinate_grid(height, width, dtype=keypoints.dtype, device=keypoints.device)
    offsets = grid - keypoints[:, :, None, None, :]  # (B,K,h,w,2)
    precision = torch.linalg.inv(covariances)  # (B,K,2,2)
    exponent = torch.einsum("bkhwi,bkij,bkhwj->bkhw", offsets, precision, offsets)
    return torch.exp(-0.5 * exponent)


def gaussian_difference(
    driving: Structure, source: Structure, height: int, width: int, norm_const: float
) -> torch.Tensor:
    """(G_driving - G_source) / norm_const per keypoint -> (B,K,h,w)."""
    assert driving.keypoints is not None and driving.covariances is not None
    assert source.keypoints is not None and source.covariances is not None
    g_driving = covariance_gaussians(driving.keypoints, driving.covariances, height, width)
    g_source = covariance_gaussians(source.keypoints, source.covariances, height, width)
    return (g_driving - g_source) / norm_const


@float32_op
def translated_copies(image: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """`image` (B,C,h,w) sampled at z + shift for each of the (B,N,2) shifts -> (B,N,C,h,w)."""
    batch, channels, height, width = image.shape
    count = shifts.shape[1]
    grid = make_coordinate_grid(height, width, dtype=image.dtype, device=image.device)
    grids = grid[None, None] + shifts[:, :, None, None, :]  # (B,N,h,w,2)
    copies = image.unsqueeze(1).expand(batch, count, channels, height, width)
    warped = warp(copies.reshape(-1, channels, height, width), grids.view(-1, height, width, 2))
    return warped.view(batch, count, channels, height, width)


def resize_maps(maps: torch.Tensor, height: int, width: int, mode: str) -> torch.Tensor:
    """(B,C,h,w) maps at (height, width): nearest, or linear ('trilinear' for a one-frame
    video is bilinear), as Monkey-Net resizes its flow and embeddings."""
    if tuple(maps.shape[-2:]) == (height, width):
        return maps
    if mode == "nearest":
        return F.interpolate(maps, size=(height, width), mode="nearest")
    return F.interpolate(maps, size=(height, width), mode="bilinear", align_corners=False)


def _downscale(source: torch.Tensor, scale_factor: float) -> torch.Tensor:
    if scale_factor == 1:
        return source
    return F.interpolate(source, scale_factor=scale_factor, mode="nearest")


class GroupBlock(nn.Module):
    """Grouped 1x1 convolution -> BatchNorm -> ReLU (`conv`, `norm`)."""

    def __init__(self, features: int, groups: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(features, features, kernel_size=1, groups=groups)
        self.norm = nn.BatchNorm2d(features, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Monkey-Net follows the ReLU with a leaky ReLU, which leaves non-negative values as is
        return F.relu(self.norm(self.conv(x)))


class DenseMotionModule(nn.Module):
    """Keypoints (with covariances) of source and driving -> dense flow (B,h,w,2), masks."""

    def __init__(
        self,
        num_kp: int = 10,
        num_channels: int = 3,
        block_expansion: int = 32,
        max_features: int = 1024,
        num_blocks: int = 5,
        num_group_blocks: int = 2,
        use_correction: bool = True,
        use_difference: bool = False,
        norm_const: float = 100.0,
        bg_init: float = 2.0,
        scale_factor: float = 1.0,
    ) -> None:
        super().__init__()
        self.num_kp = num_kp
        self.use_correction = use_correction
        self.use_difference = use_difference
        self.norm_const = norm_const
        self.scale_factor = scale_factor
        per_keypoint = 1 + 2 * use_difference + num_channels
        features = per_keypoint * (num_kp + 1)
        self.group_blocks = nn.ModuleList(
            GroupBlock(features, num_kp + 1) for _ in range(num_group_blocks)
        )
        out_features = num_kp + 1 + 2 * use_correction
        self.hourglass = HeadHourglass(
            block_expansion, features, out_features, num_blocks, max_features
        )
        # the motion starts as the background's (identity) flow: zero weights, bias bg_init
        head = self.hourglass.decoder.conv
        nn.init.zeros_(head.weight)
        with torch.no_grad():
            head.bias.zero_()
            head.bias[0] = bg_init

    def forward(
        self, source: torch.Tensor, driving: Structure, source_structure: Structure
    ) -> dict[str, torch.Tensor]:
        small = _downscale(source, self.scale_factor)
        batch, _, height, width = small.shape
        assert driving.keypoints is not None and source_structure.keypoints is not None
        heatmaps = gaussian_difference(driving, source_structure, height, width, self.norm_const)
        shifts = source_structure.keypoints - driving.keypoints  # (B,K,2)
        shifts = torch.cat([torch.zeros_like(shifts[:, :1]), shifts], dim=1)  # background first
        heatmaps = torch.cat([torch.zeros_like(heatmaps[:, :1]), heatmaps], dim=1)
        parts = [heatmaps.unsqueeze(2)]
        if self.use_difference:
            parts.append(shifts[..., None, None].expand(-1, -1, -1, height, width))
        deformed = translated_copies(small, shifts)
        parts.append(deformed.to(heatmaps.dtype))
        features = torch.cat(parts, dim=2).view(batch, -1, height, width)
        for block in self.group_blocks:
            features = block(features)
        prediction = self.hourglass(features).float()
        masks = F.softmax(prediction[:, : self.num_kp + 1], dim=1)  # (B,K+1,h,w)
        flow = torch.einsum("bkhw,bki->bhwi", masks, shifts.float())
        if self.use_correction:
            flow = flow + prediction[:, -2:].permute(0, 2, 3, 1)
        grid = make_coordinate_grid(height, width, dtype=flow.dtype, device=flow.device)
        return {
            "deformation": grid + flow,
            "motion_masks": masks,
            "sparse_deformed": deformed,
        }


class VideoDecoder(nn.Module):
    """U-Net decoder whose levels each take `extra_features` more channels (`up_blocks`)."""

    def __init__(
        self, block_expansion: int, max_features: int, num_blocks: int, extra_features: int
    ) -> None:
        super().__init__()
        blocks = []
        for level in reversed(range(num_blocks)):
            width = level_width(block_expansion, max_features, level + 1)
            in_width = (width if level == num_blocks - 1 else 2 * width) + extra_features
            blocks.append(UpBlock2d(in_width, level_width(block_expansion, max_features, level)))
        self.up_blocks = nn.ModuleList(blocks)

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor:
        skips = list(skips)
        out = skips.pop()
        for block in self.up_blocks:
            out = torch.cat([block(out), skips.pop()], dim=1)
        return out


class MonkeyNetGenerator(Generator):
    """Monkey-Net's motion-transfer generator, driven by keypoints and their covariances."""

    requires: ClassVar[frozenset[str]] = frozenset({"keypoints", "covariances"})
    natural_masker: ClassVar[str] = "monkey_net_keypoints"
    baseline_label: ClassVar[str | None] = "Monkey-Net"
    warped_output: ClassVar[str | None] = "deformed"
    presets: ClassVar[Mapping[str, Preset]] = {
        PAPER: Preset(),
        CPU64: Preset(
            params={
                "block_expansion": 16,
                "max_features": 128,
                "num_blocks": 4,
                "num_refinement_blocks": 2,
                "dense_block_expansion": 16,
                "dense_max_features": 128,
                "dense_num_blocks": 4,
            }
        ),
        MICRO: Preset(
            params={
                "block_expansion": 8,
                "max_features": 32,
                "num_blocks": 3,
                "num_refinement_blocks": 1,
                "dense_block_expansion": 8,
                "dense_max_features": 32,
                "dense_num_blocks": 3,
                "num_group_blocks": 1,
            }
        ),
    }

    def __init__(
        self,
        num_kp: int = 10,
        num_channels: int = 3,
        block_expansion: int = 32,
        max_features: int = 1024,
        num_blocks: int = 5,
        num_refinement_blocks: int = 4,
        dense_block_expansion: int = 32,
        dense_max_features: int = 1024,
        dense_num_blocks: int = 5,
        num_group_blocks: int = 2,
        use_correction: bool = True,
        use_difference: bool = False,
        norm_const: float = 100.0,
        bg_init: float = 2.0,
        dense_scale_factor: float = 1.0,
        embedding_scale_factor: float = 1.0,
        kp_embedding: bool = True,
        interpolation_mode: str = "nearest",
    ) -> None:
        super().__init__()
        if interpolation_mode not in INTERPOLATION_MODES:
            raise ValueError(
                f"interpolation_mode must be one of {INTERPOLATION_MODES}, got "
                f"{interpolation_mode!r}"
            )
        self.num_kp = num_kp
        self.norm_const = norm_const
        self.embedding_scale_factor = embedding_scale_factor
        self.kp_embedding = kp_embedding
        self.interpolation_mode = interpolation_mode
        self.num_blocks = num_blocks
        extra = num_kp if kp_embedding else 0
        self.appearance_encoder = HourglassEncoder(
            block_expansion, num_channels, num_blocks, max_features
        )
        self.dense_motion_module = DenseMotionModule(
            num_kp,
            num_channels,
            dense_block_expansion,
            dense_max_features,
            dense_num_blocks,
            num_group_blocks,
            use_correction,
            use_difference,
            norm_const,
            bg_init,
            dense_scale_factor,
        )
        self.video_decoder = VideoDecoder(block_expansion, max_features, num_blocks, extra)
        features = block_expansion + num_channels + extra
        self.refinement_module = nn.Sequential()
        for i in range(num_refinement_blocks):
            self.refinement_module.add_module(f"r{i}", ResBlock2d(features))
        self.refinement_module.add_module("conv-last", nn.Conv2d(features, num_channels, 1))
        with_frame_kernels(self)

    def _warp(self, image: torch.Tensor, deformation: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        grid = resize_maps(deformation.permute(0, 3, 1, 2), height, width, self.interpolation_mode)
        return warp(image, grid.permute(0, 2, 3, 1))

    def forward(
        self, source: torch.Tensor, source_structure: Structure, driving_structure: Structure
    ) -> dict[str, torch.Tensor]:
        for name, structure in (("source", source_structure), ("driving", driving_structure)):
            if structure.keypoints is None or structure.covariances is None:
                raise ValueError(
                    f"monkey_net needs keypoints and covariances in the {name} structure"
                )
            if structure.keypoints.shape[1] != self.num_kp:
                raise CompatibilityError(
                    f"monkey_net was built for {self.num_kp} keypoints but the {name} structure "
                    f"has {structure.keypoints.shape[1]}; give masker and generator the same "
                    "num_kp"
                )
        multiple = 2**self.num_blocks
        if source.shape[-2] % multiple or source.shape[-1] % multiple:
            raise FrameSizeError(
                f"monkey_net with num_blocks={self.num_blocks} needs height and width divisible "
                f"by {multiple}, got {tuple(source.shape[-2:])}"
            )
        skips = self.appearance_encoder(source)
        motion = self.dense_motion_module(source, driving_structure, source_structure)
        deformation = motion["deformation"]
        skips = [self._warp(skip, deformation) for skip in skips]
        if self.kp_embedding:
            small = _downscale(source, self.embedding_scale_factor)
            embedding = gaussian_difference(
                driving_structure, source_structure, *small.shape[-2:], self.norm_const
            )
            skips = [
                torch.cat(
                    [
                        skip,
                        resize_maps(embedding, *skip.shape[-2:], self.interpolation_mode).to(
                            skip.dtype
                        ),
                    ],
                    dim=1,
                )
                for skip in skips
            ]
        features = self.refinement_module(self.video_decoder(skips))
        prediction = torch.sigmoid(features.float())
        deformed = self._warp(source, deformation)
        return {"prediction": prediction, "deformed": deformed, **motion}
