"""`learned_projection`: a learned 1x1 convolution over the frozen detector's K logit channels.

The paper ("Image Animation with Keypoint Mask") sums the K raw keypoint logits into one mask and
names, as future work, replacing that fixed sum by something learned from the detector. This
masker does exactly that with the smallest learned map: a 1x1 convolution K -> C. Initialised
with all-ones weights and zero bias it starts as the paper's summed heatmap mask and then trains
jointly with the generator, while the detector itself stays frozen.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from kptoolkit.errors import CompatibilityError
from kptoolkit.maskers.base import Masker
from kptoolkit.maskers.functional import finish_mask
from kptoolkit.structure import Structure

INITS = ("sum", "random")


class LearnedProjectionMasker(Masker):
    """Learned 1x1 projection of the detector's K logit channels, in place of their fixed sum."""

    provides: ClassVar[frozenset[str]] = frozenset({"mask"})
    needs_detector: ClassVar[bool] = True

    def __init__(self, num_kp: int = 10, out_channels: int = 1, init: str = "sum") -> None:
        super().__init__()
        if num_kp < 1 or out_channels < 1:
            raise ValueError(f"num_kp and out_channels must be >= 1, got {num_kp}, {out_channels}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        self.num_kp = num_kp
        self.channels = out_channels
        self.projection = nn.Conv2d(num_kp, out_channels, kernel_size=1)
        if init == "sum":
            nn.init.ones_(self.projection.weight)
            nn.init.zeros_(self.projection.bias)

    @classmethod
    def mask_channels_for(cls, params: Mapping[str, Any]) -> int:
        """`out_channels` (1 by default)."""
        return int(params.get("out_channels", 1))

    def project(self, logits: torch.Tensor) -> torch.Tensor:
        """(B,K,h,w) raw detector logits -> (B,C,h+6,w+6) mask, min-max normalised and padded."""
        if logits.ndim != 4 or logits.shape[1] != self.num_kp:
            raise CompatibilityError(
                f"learned_projection was built for {self.num_kp} keypoints but the detector "
                f"gives logits of shape {tuple(logits.shape)}; set its num_kp to match"
            )
        return finish_mask(self.projection(logits))

    def forward(self, frame: torch.Tensor) -> Structure:
        return Structure(mask=self.project(self.detector(frame).logits))
