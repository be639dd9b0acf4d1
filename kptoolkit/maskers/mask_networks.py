"""The networks of `perturbed_mask`: an encoder-decoder without skips and the mask refiner.

Facts taken from the public implementation of "Image Animation with Perturbed Masks":

- Refinement network: encoder-decoder without skips (64, max 1024, 5 blocks) on [source resized
  bilinearly to the mask size, source mask (detached), perturbed driving mask], conv 7x7 with
  padding 3 to one channel, / 0.1, sigmoid. Loss: 100 * L1(refined, clean driving mask detached);
  the original only runs it (`predict_mask = epoch >= 1`) from the second epoch on.
- The mask network (`kptoolkit.maskers.perturbed_mask`) uses the same encoder-decoder, whose
  decoder does *not* concatenate the encoder outputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kptoolkit.errors import FrameSizeError
from kptoolkit.nn.blocks import UpBlock2d
from kptoolkit.nn.hourglass import HourglassEncoder, level_width

MASK_KERNEL = 7  # the 7x7 output convolutions of both networks

__all__ = ["MASK_KERNEL", "EncoderDecoder", "MaskRefiner", "PlainDecoder", "refinement_input"]


def refinement_input(
    source: torch.Tensor, source_mask: torch.Tensor, driving_mask: torch.Tensor
) -> torch.Tensor:
    """[source resized bilinearly to the mask size, source mask, driving mask]: (B,3+2C,h,w)."""
    if source_mask.shape != driving_mask.shape:
        raise ValueError(
            f"source and driving masks differ in shape: {tuple(source_mask.shape)} vs "
            f"{tuple(driving_mask.shape)}"
        )
    small = F.interpolate(
        source, size=driving_mask.shape[-2:], mode="bilinear", align_corners=False
    )
    return torch.cat([small, source_mask, driving_mask], dim=1)


class PlainDecoder(nn.Module):
    """Up blocks without skip concatenation: deepest width -> `block_expansion` channels."""

    def __init__(self, block_expansion: int, num_blocks: int, max_features: int) -> None:
        super().__init__()
        self.up_blocks = nn.ModuleList(
            UpBlock2d(
                level_width(block_expansion, max_features, level + 1),
                level_width(block_expansion, max_features, level),
            )
            for level in reversed(range(num_blocks))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Upsample the deepest features through every up block."""
        for block in self.up_blocks:
            x = block(x)
        return x


class EncoderDecoder(nn.Module):
    """FOMM hourglass without the U-Net skips (the original's `HourglassNoRes`).

    Same encoder as `kptoolkit.nn.Hourglass`, but the decoder never concatenates the encoder
    outputs, so the output has `block_expansion` channels at the input's size. Parameter names
    (`encoder.down_blocks.*`, `decoder.up_blocks.*`) follow the original.
    """

    def __init__(
        self, block_expansion: int, in_features: int, num_blocks: int, max_features: int
    ) -> None:
        super().__init__()
        self.encoder = HourglassEncoder(block_expansion, in_features, num_blocks, max_features)
        self.decoder = PlainDecoder(block_expansion, num_blocks, max_features)
        self.num_blocks = num_blocks
        self.out_filters = block_expansion

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,in_features,H,W) -> (B,block_expansion,H,W); H and W divisible by 2**num_blocks."""
        multiple = 2**self.num_blocks
        if x.shape[-2] % multiple or x.shape[-1] % multiple:
            raise FrameSizeError(
                f"an encoder-decoder with {self.num_blocks} blocks needs height and width "
                f"divisible by {multiple}, got {tuple(x.shape[-2:])}; choose data.frame_size "
                "(or the masker's scale_factor / num_blocks) to fit"
            )
        for block in self.encoder.down_blocks:
            x = block(x)
        return self.decoder(x)


class MaskRefiner(nn.Module):
    """Refines a perturbed driving mask given the source frame and the source mask.

    `mask_fix_net` (encoder-decoder without skips on 3 + 2 channels), `ref` (conv 7x7, padding
    3, to one channel), then sigmoid(./temperature). The names are those of the original's
    generator, so its `mask_fix_net.*` and `ref.*` entries load here under `refiner.`.
    """

    def __init__(
        self,
        block_expansion: int = 64,
        num_blocks: int = 5,
        max_features: int = 1024,
        temperature: float = 0.1,
        mask_channels: int = 1,
    ) -> None:
        super().__init__()
        self.mask_fix_net = EncoderDecoder(
            block_expansion, 3 + 2 * mask_channels, num_blocks, max_features
        )
        self.ref = nn.Conv2d(block_expansion, mask_channels, MASK_KERNEL, padding=MASK_KERNEL // 2)
        self.temperature = temperature

    def forward(
        self, source: torch.Tensor, source_mask: torch.Tensor, driving_mask: torch.Tensor
    ) -> torch.Tensor:
        """The refined driving mask (B,C,h,w) in [0, 1]."""
        features = self.mask_fix_net(refinement_input(source, source_mask, driving_mask))
        return torch.sigmoid(self.ref(features) / self.temperature)
