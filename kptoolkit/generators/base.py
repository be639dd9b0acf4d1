"""The `Generator` interface and its hooks (the resolver checks a pair before building it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from kptoolkit.nn.component import Component
from kptoolkit.structure import Structure


class Generator(Component):
    """Base class: `forward(source, source_structure, driving_structure) -> dict`.

    The dict holds at least `prediction` (B,3,H,W) in [0, 1], plus named intermediates.
    `requires` names the Structure fields the generator reads; `mask_channels` is the mask
    channel count it was built for (None when it reads no mask).
    """

    HOOKS: ClassVar[tuple[str, ...]] = (
        *Component.HOOKS,
        "requires",
        "requires_for",
        "natural_masker",
        "warped_output",
        "baseline_label",
    )

    #: the Structure fields the generator reads (a masker must provide them)
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

    @classmethod
    def requires_for(cls, params: Mapping[str, Any]) -> frozenset[str]:
        """What a generator built with `params` reads, known before it is built (default:
        `requires`); override when it depends on the parameters."""
        return cls.requires

    def forward(
        self, source: torch.Tensor, source_structure: Structure, driving_structure: Structure
    ) -> dict[str, torch.Tensor]:  # pragma: no cover - interface
        raise NotImplementedError
