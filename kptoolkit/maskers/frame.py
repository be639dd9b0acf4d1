"""The `frame` masker: the driving frame itself is the structure (X2Face consumes it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from kptoolkit.maskers.base import Masker
from kptoolkit.structure import Structure


class FrameMasker(Masker):
    """Passes the frame through unchanged as the structure, for generators that read frames."""

    provides: ClassVar[frozenset[str]] = frozenset({"frame"})

    def __init__(self) -> None:
        super().__init__()
        self.channels = 3

    @classmethod
    def mask_channels_for(cls, params: Mapping[str, Any]) -> int:
        """Three: the frame's colours."""
        return 3

    def forward(self, frame: torch.Tensor) -> Structure:
        if frame.ndim != 4 or frame.shape[1] != 3:
            raise ValueError(f"frame masker expects (B,3,H,W) frames, got {tuple(frame.shape)}")
        return Structure(frame=frame)
