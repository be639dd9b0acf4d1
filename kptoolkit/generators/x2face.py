"""The X2Face baseline (Wiles, Koepke, Zisserman, ECCV 2018): two learned sampling grids.

The **embedding network**, a U-Net (kptoolkit's `Hourglass`, which has skip connections),
maps the source frame to a 2-channel sampling grid that warps the source into the *embedded
face* (`embedding_grid`, `embedded`). The **driving network**, an encoder-decoder *without*
skip connections (down blocks to a narrow bottleneck, the "driving vector", then up blocks with
no concatenation), maps the driving frame to a second sampling grid (`driving_grid`) that warps
the embedded face into the output (`prediction`). Nothing is synthesised: every output pixel is
bilinearly sampled from the source, so the model trains with a photometric L1 loss alone (the
trainer applies it). Both grids hold (x, y) in the [-1, 1] pixel-centre convention of
`kptoolkit.generators.motion.warp` (grid_sample, align_corners=True, zero padding).

`grid_mode` sets how the tanh output becomes a grid:

- `"residual"` (default): identity grid + `residual_scale` * tanh output. The defaults
  (`residual_scale=1.0`, `zero_init=False`: the last convolutions keep their random
  initialisation) are what the authors' released code does ("offset from the identity
  mapping"). `zero_init=True` with a small scale (e.g. 0.25) starts both warps at the identity
  (the prediction is then the source): a kptoolkit option that trains faster from scratch.
- `"absolute"`: the tanh output is the sampling grid itself, as the method is sometimes
  described; the network must learn positions from scratch (slow, and far worse in a short
  run).

Not built: the released code's third embedding channel (a confidence used to average several
source frames; with one source frame it cancels out), the driving network's audio / pose-code
inputs and the paper's second training stage with an identity loss. Both networks use
kptoolkit's FOMM blocks (conv3x3-BatchNorm-ReLU with average pooling / nearest upsampling)
rather than pix2pix's strided 4x4 convolutions with LeakyReLU; the default widths and depths
follow the released code (64, 128, 256, then 512 channels down to 1x1 at 256 px; a
128-channel driving vector).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import ClassVar

import torch
from torch import nn

from kptoolkit.errors import FrameSizeError
from kptoolkit.generators.base import Generator
from kptoolkit.generators.motion import warp
from kptoolkit.nn.blocks import DownBlock2d, UpBlock2d
from kptoolkit.nn.float32 import float32_call
from kptoolkit.nn.grid import make_coordinate_grid
from kptoolkit.nn.hourglass import Hourglass, level_width
from kptoolkit.registry.presets import CPU64, MICRO, PAPER, Preset
from kptoolkit.structure import Structure

GRID_MODES = ("absolute", "residual")
NUM_CHANNELS = 3


def _check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"x2face: {name} must be a positive integer, got {value!r}")


class EmbeddingNetwork(nn.Module):
    """U-Net (hourglass with skips) -> 7x7 conv: the 2-channel embedding-grid logits."""

    def __init__(self, block_expansion: int, max_features: int, num_blocks: int) -> None:
        super().__init__()
        self.hourglass = Hourglass(block_expansion, NUM_CHANNELS, num_blocks, max_features)
        self.final = nn.Conv2d(self.hourglass.out_filters, 2, kernel_size=7, padding=3)
        self.num_blocks = num_blocks

    def forward(self, source: torch.Tensor) -> torch.Tensor:
        return float32_call(self.final, self.hourglass(source))


class DrivingNetwork(nn.Module):
    """Encoder-decoder without skips -> 7x7 conv: the 2-channel driving-grid logits.

    Down block i gives `level_width(i + 1)` channels, except the last, which gives
    `bottleneck_features` (the driving vector; the level width when None). Up blocks mirror the
    encoder back to `block_expansion` channels at full size, with no concatenation.
    """

    def __init__(
        self,
        block_expansion: int,
        max_features: int,
        num_blocks: int,
        bottleneck_features: int | None = None,
    ) -> None:
        super().__init__()
        widths = [NUM_CHANNELS] + [
            level_width(block_expansion, max_features, level) for level in range(1, num_blocks + 1)
        ]
        if bottleneck_features is not None:
            widths[-1] = bottleneck_features
        self.down_blocks = nn.ModuleList(
            DownBlock2d(widths[i], widths[i + 1]) for i in range(num_blocks)
        )
        self.up_blocks = nn.ModuleList(
            UpBlock2d(widths[level + 1], level_width(block_expansion, max_features, level))
            for level in reversed(range(num_blocks))
        )
        self.final = nn.Conv2d(block_expansion, 2, kernel_size=7, padding=3)
        self.num_blocks = num_blocks
        self.bottleneck_features = widths[-1]

    def encode(self, driving: torch.Tensor) -> torch.Tensor:
        """The bottleneck features (the driving vector when the bottleneck is 1x1)."""
        for block in self.down_blocks:
            driving = block(driving)
        return driving

    def forward(self, driving: torch.Tensor) -> torch.Tensor:
        x = self.encode(driving)
        for block in self.up_blocks:
            x = block(x)
        return float32_call(self.final, x)


class X2FaceGenerator(Generator):
    """X2Face: an embedding grid warps the source, a driving grid warps the result (baseline)."""

    requires: ClassVar[frozenset[str]] = frozenset({"frame"})
    natural_masker: ClassVar[str] = "frame"
    baseline_label: ClassVar[str | None] = "X2Face"
    presets: ClassVar[Mapping[str, Preset]] = {
        PAPER: Preset(),
        CPU64: Preset(
            params={
                "embedding_block_expansion": 8,
                "embedding_max_features": 128,
                "embedding_num_blocks": 5,
                "driving_block_expansion": 8,
                "driving_max_features": 128,
                "driving_num_blocks": 5,
                "driving_bottleneck_features": 32,
            }
        ),
        MICRO: Preset(
            params={
                "embedding_block_expansion": 4,
                "embedding_max_features": 16,
                "embedding_num_blocks": 3,
                "driving_block_expansion": 4,
                "driving_max_features": 16,
                "driving_num_blocks": 3,
                "driving_bottleneck_features": 8,
            }
        ),
    }

    def __init__(
        self,
        embedding_block_expansion: int = 32,
        embedding_max_features: int = 512,
        embedding_num_blocks: int = 8,
        driving_block_expansion: int = 32,
        driving_max_features: int = 512,
        driving_num_blocks: int = 8,
        driving_bottleneck_features: int | None = 128,
        grid_mode: str = "residual",
        residual_scale: float = 1.0,
        zero_init: bool = False,
    ) -> None:
        """Build both networks.

        Widths: level i of either network has min(max_features, block_expansion * 2**i)
        channels; `num_blocks` halvings, so frames need sides divisible by 2**num_blocks (256
        for the defaults, which reach 1x1 at 256 px as the released code does).
        `driving_bottleneck_features` is the width of the driving network's last down block
        (None: the level width). `residual_scale` multiplies the tanh offset in residual mode
        (ignored in absolute mode). `zero_init` zeroes both final convolutions (identity warps
        at step 0, residual mode only: in absolute mode it would make every pixel sample the
        frame centre, so it is an error there).
        """
        super().__init__()
        for name, value in (
            ("embedding_block_expansion", embedding_block_expansion),
            ("embedding_max_features", embedding_max_features),
            ("embedding_num_blocks", embedding_num_blocks),
            ("driving_block_expansion", driving_block_expansion),
            ("driving_max_features", driving_max_features),
            ("driving_num_blocks", driving_num_blocks),
        ):
            _check_positive_int(name, value)
        if driving_bottleneck_features is not None:
            _check_positive_int("driving_bottleneck_features", driving_bottleneck_features)
        if grid_mode not in GRID_MODES:
            raise ValueError(
                f"x2face: grid_mode must be one of {', '.join(GRID_MODES)}, got {grid_mode!r}"
            )
        if (
            isinstance(residual_scale, bool)
            or not isinstance(residual_scale, (int, float))
            or not math.isfinite(residual_scale)
            or residual_scale <= 0
        ):
            raise ValueError(
                f"x2face: residual_scale must be a positive finite number, got {residual_scale!r}"
            )
        if zero_init and grid_mode == "absolute":
            raise ValueError(
                "x2face: zero_init=True needs grid_mode='residual' (in absolute mode a zero "
                "final convolution makes every pixel sample the frame centre)"
            )
        self.mask_channels = None
        self.grid_mode = grid_mode
        self.residual_scale = float(residual_scale)
        self.embedding_network = EmbeddingNetwork(
            embedding_block_expansion, embedding_max_features, embedding_num_blocks
        )
        self.driving_network = DrivingNetwork(
            driving_block_expansion,
            driving_max_features,
            driving_num_blocks,
            driving_bottleneck_features,
        )
        self.size_multiple = 2 ** max(embedding_num_blocks, driving_num_blocks)
        if zero_init:
            for final in (self.embedding_network.final, self.driving_network.final):
                nn.init.zeros_(final.weight)
                nn.init.zeros_(final.bias)

    def to_grid(self, logits: torch.Tensor) -> torch.Tensor:
        """2-channel logits (B,2,H,W) -> sampling grid (B,H,W,2) of (x, y), per `grid_mode`."""
        offsets = torch.tanh(logits).permute(0, 2, 3, 1)
        if self.grid_mode == "absolute":
            return offsets
        height, width = logits.shape[-2:]
        identity = make_coordinate_grid(height, width, dtype=logits.dtype, device=logits.device)
        return identity + self.residual_scale * offsets

    def check_frames(self, source: torch.Tensor, driving: torch.Tensor) -> None:
        """Raise a ValueError unless both are (B,3,H,W) of one shape with H, W fitting the nets."""
        for name, frame in (("source", source), ("driving", driving)):
            if frame.ndim != 4 or frame.shape[1] != NUM_CHANNELS:
                raise ValueError(
                    f"x2face: the {name} frame must be (B,3,H,W), got {tuple(frame.shape)}"
                )
        if source.shape != driving.shape:
            raise ValueError(
                f"x2face: source {tuple(source.shape)} and driving {tuple(driving.shape)} frames "
                "must have the same batch size and frame size"
            )
        height, width = source.shape[-2:]
        if height % self.size_multiple or width % self.size_multiple:
            raise FrameSizeError(
                f"x2face: frame height and width must be divisible by {self.size_multiple} "
                f"(2**num_blocks of the deeper network), got {height}x{width}; choose "
                "data.frame_size to fit"
            )

    def forward(
        self, source: torch.Tensor, source_structure: Structure, driving_structure: Structure
    ) -> dict[str, torch.Tensor]:
        driving = driving_structure.frame
        if driving is None:
            raise ValueError(
                "x2face needs the driving frame in driving_structure.frame (the 'frame' masker)"
            )
        self.check_frames(source, driving)
        embedding_grid = self.to_grid(self.embedding_network(source))
        embedded = warp(source, embedding_grid)
        driving_grid = self.to_grid(self.driving_network(driving))
        prediction = warp(embedded, driving_grid).clamp(0.0, 1.0)
        return {
            "prediction": prediction,
            "embedded": embedded,
            "embedding_grid": embedding_grid,
            "driving_grid": driving_grid,
        }
