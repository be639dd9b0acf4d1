"""The `Generator` interface and the masker/generator compatibility check."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from kptoolkit.errors import CompatibilityError
from kptoolkit.structure import Structure


class Generator(nn.Module):
    """Base class: `forward(source, source_structure, driving_structure) -> dict`.

    The dict holds at least `prediction` (B,3,H,W) in [0, 1], plus named intermediates.
    `requires` names the Structure fields the generator reads; `mask_channels` is the mask
    channel count it was built for (None when it reads no mask).
    """

    requires: ClassVar[frozenset[str]] = frozenset({"mask"})
    #: the masker used when an experiment names none
    natural_masker: ClassVar[str] = "heatmap_sum"
    #: the output holding the source warped by the predicted motion alone (before any
    #: decoder), for the bench's "warped source only" control; None when there is none
    warped_output: ClassVar[str | None] = None
    #: the row's name in bench tables when it runs as a baseline (None: its registered name)
    baseline_label: ClassVar[str | None] = None

    def __init__(self) -> None:
        super().__init__()
        self.mask_channels: int | None = None

    def forward(
        self, source: torch.Tensor, source_structure: Structure, driving_structure: Structure
    ) -> dict[str, torch.Tensor]:  # pragma: no cover - interface
        raise NotImplementedError


def check_compatible(
    masker: nn.Module, generator: Generator, masker_name: str, generator_name: str
) -> None:
    """Raise one clear `CompatibilityError` naming both when they cannot work together."""
    provides = frozenset(getattr(masker, "provides", frozenset()))
    missing = generator.requires - provides
    if missing:
        raise CompatibilityError(
            f"masker '{masker_name}' provides {sorted(provides)} but generator '{generator_name}' "
            f"requires {sorted(generator.requires)} (missing: {', '.join(sorted(missing))})"
        )
    channels = getattr(masker, "channels", None)
    if "mask" in generator.requires and generator.mask_channels != channels:
        raise CompatibilityError(
            f"masker '{masker_name}' gives {channels}-channel masks but generator "
            f"'{generator_name}' was built for {generator.mask_channels}; set "
            f"generator.params.mask_channels={channels}"
        )
