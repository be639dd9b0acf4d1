"""FOMM's multi-scale PatchGAN discriminator; parameter names match official checkpoints.

An official `discriminator` entry (e.g. in `taichi-cpk.pth.tar`: 16 entries, 2,758,849
parameters at the Tai-Chi widths 32 / 512 / 4 blocks / scale 1) loads with `strict=True`. The
image pyramid is computed inside `forward` with the anti-aliased downscale of `kptoolkit.nn`, from
a kernel built on the fly, so it adds no buffer to the state dict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from kptoolkit.generators.motion import keypoint_gaussians
from kptoolkit.nn.anti_alias import anti_alias_downscale, anti_alias_kernel, inverse_scale
from kptoolkit.nn.component import Component
from kptoolkit.registry.presets import CPU64, MICRO, PAPER, Preset

KERNEL_SIZE = 4
LEAKY_SLOPE = 0.2


def scale_name(scale: float) -> str:
    """The display name of a scale: 1 -> "1", 0.5 -> "0.5" (1.0 and 1 give the same name)."""
    return f"{float(scale):g}"


def scale_key(scale: float) -> str:
    """The `discs` key of a scale as the official code spells it: "1", "0-5", "0-25"."""
    return scale_name(scale).replace(".", "-")


@attrs.frozen
class DiscriminatorOutput:
    """One scale's intermediate feature maps (one per down block) and its prediction map."""

    feature_maps: list[torch.Tensor]
    prediction_map: torch.Tensor


class DiscriminatorBlock(nn.Module):
    """conv4x4 (no padding) -> [InstanceNorm] -> LeakyReLU(0.2) -> [2x2 average pooling]."""

    def __init__(self, in_features: int, out_features: int, norm: bool, pool: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, KERNEL_SIZE)
        self.norm = nn.InstanceNorm2d(out_features, affine=True) if norm else None
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        if self.norm is not None:
            out = self.norm(out)
        out = F.leaky_relu(out, LEAKY_SLOPE)
        if self.pool:
            out = F.avg_pool2d(out, 2)
        return out


class Discriminator(nn.Module):
    """Single-scale PatchGAN (Pix2Pix-like): `down_blocks.<i>.{conv,norm}` then a 1x1 `conv`.

    Block i maps min(max_features, block_expansion * 2**i) channels (the input channels for
    i = 0, plus `num_kp` keypoint heatmaps with `use_kp`) to min(max_features,
    block_expansion * 2**(i+1)); every block but the first is instance-normalised and every block
    but the last is followed by 2x2 average pooling.
    """

    def __init__(
        self,
        num_channels: int = 3,
        block_expansion: int = 32,
        max_features: int = 512,
        num_blocks: int = 4,
        use_kp: bool = False,
        num_kp: int = 10,
        kp_variance: float = 0.01,
    ) -> None:
        super().__init__()
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        self.num_blocks = num_blocks
        self.use_kp = use_kp
        self.num_kp = num_kp
        self.kp_variance = kp_variance
        in_features = num_channels + (num_kp if use_kp else 0)
        blocks = []
        for i in range(num_blocks):
            out_features = min(max_features, block_expansion * 2 ** (i + 1))
            blocks.append(
                DiscriminatorBlock(in_features, out_features, norm=i != 0, pool=i != num_blocks - 1)
            )
            in_features = out_features
        self.down_blocks = nn.ModuleList(blocks)
        self.conv = nn.Conv2d(in_features, 1, kernel_size=1)

    @property
    def min_input_size(self) -> int:
        """The smallest square input side this discriminator accepts (61 for 4 blocks)."""
        size = KERNEL_SIZE
        while not _fits(size, self.num_blocks):
            size += 1
        return size

    def forward(
        self, x: torch.Tensor, keypoints: torch.Tensor | None = None
    ) -> DiscriminatorOutput:
        """Feature maps and prediction map of (B,C,H,W) frames; `keypoints` (B,K,2) with use_kp."""
        height, width = x.shape[-2:]
        if min(height, width) < self.min_input_size:
            raise ValueError(
                f"the discriminator ({self.num_blocks} blocks of 4x4 convolutions) needs inputs of "
                f"at least {self.min_input_size}x{self.min_input_size} pixels, got "
                f"{height}x{width}; use fewer blocks or drop the small scales"
            )
        out = x
        if self.use_kp:
            if keypoints is None:
                raise ValueError("this discriminator has use_kp=True and needs keypoints")
            heatmaps = keypoint_gaussians(keypoints, height, width, self.kp_variance)
            out = torch.cat([out, heatmaps.to(out.dtype)], dim=1)
        feature_maps = []
        for block in self.down_blocks:
            out = block(out)
            feature_maps.append(out)
        return DiscriminatorOutput(feature_maps, self.conv(out))


def _fits(size: int, num_blocks: int) -> bool:
    """Whether a size x size input survives `num_blocks` blocks (normalised maps need > 1 pixel)."""
    for i in range(num_blocks):
        size -= KERNEL_SIZE - 1
        if size < (2 if i != 0 else 1):
            return False
        if i != num_blocks - 1:
            size //= 2
    return size >= 1


class MultiScaleDiscriminator(Component):
    """One `Discriminator` per scale, in `discs` keyed "1", "0-5", ... as in official checkpoints.

    `forward` takes either a (B,C,H,W) tensor, downscaled here for every scale below 1 with the
    anti-aliased downscale of `kptoolkit.nn` (FOMM's image pyramid), or a ready pyramid: a mapping
    keyed by the scale (1, 0.5), its name ("1", "0.5") or FOMM's "prediction_<scale>". It returns
    {scale name: DiscriminatorOutput}, e.g. {"1": ...}.
    """

    presets: ClassVar[Mapping[str, Preset]] = {
        PAPER: Preset(),
        CPU64: Preset(params={"block_expansion": 16, "max_features": 128}),
        MICRO: Preset(params={"block_expansion": 4, "max_features": 16, "num_blocks": 3}),
    }

    def __init__(
        self,
        scales: Sequence[float] = (1,),
        num_channels: int = 3,
        block_expansion: int = 32,
        max_features: int = 512,
        num_blocks: int = 4,
        use_kp: bool = False,
        num_kp: int = 10,
        kp_variance: float = 0.01,
    ) -> None:
        super().__init__()
        if not scales:
            raise ValueError("a multi-scale discriminator needs at least one scale")
        for scale in scales:
            inverse_scale(scale)  # rejects scales that are not 1/n
        names = [scale_name(scale) for scale in scales]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate discriminator scales: {list(scales)}")
        self.scales = tuple(float(scale) for scale in scales)
        self.use_kp = use_kp
        params = {
            "num_channels": num_channels,
            "block_expansion": block_expansion,
            "max_features": max_features,
            "num_blocks": num_blocks,
            "use_kp": use_kp,
            "num_kp": num_kp,
            "kp_variance": kp_variance,
        }
        self.discs = nn.ModuleDict({scale_key(s): Discriminator(**params) for s in scales})

    def pyramid(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """{scale name: anti-aliased downscale of (B,C,H,W) `frames`} for every scale."""
        out = {}
        for scale in self.scales:
            stride = inverse_scale(scale)
            if stride == 1:
                out[scale_name(scale)] = frames
                continue
            kernel = anti_alias_kernel(scale, frames.dtype).to(frames.device)
            weight = kernel.expand(frames.shape[1], 1, *kernel.shape)
            out[scale_name(scale)] = anti_alias_downscale(frames, weight, stride)
        return out

    def forward(
        self,
        frames: torch.Tensor | Mapping[str | float, torch.Tensor],
        keypoints: torch.Tensor | None = None,
    ) -> dict[str, DiscriminatorOutput]:
        """Per scale name, the feature maps and prediction map; `keypoints` only with use_kp."""
        pyramid = self.pyramid(frames) if isinstance(frames, torch.Tensor) else frames
        return {
            scale_name(scale): self.discs[scale_key(scale)](_at_scale(pyramid, scale), keypoints)
            for scale in self.scales
        }


def _at_scale(pyramid: Mapping[str | float, torch.Tensor], scale: float) -> torch.Tensor:
    name = scale_name(scale)
    for key in (name, scale, f"prediction_{name}"):
        if key in pyramid:
            return pyramid[key]
    raise KeyError(
        f"the image pyramid has no entry for scale {name}; its keys: {', '.join(map(str, pyramid))}"
    )
