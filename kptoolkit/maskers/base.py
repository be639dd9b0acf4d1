"""The `Masker` interface shared by every built-in and plugin masker."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from kptoolkit.errors import CompatibilityError
from kptoolkit.structure import Structure


class Masker(nn.Module):
    """Base class: `forward(frame (B,3,H,W) in [0,1]) -> Structure`.

    Subclasses declare what they `provide` ({"mask"}, {"keypoints", "jacobians"}, {"frame"}),
    their mask `channels`, whether they have `trainable` parameters, whether they support
    relative motion, and whether they need the shared frozen keypoint detector.
    """

    provides: ClassVar[frozenset[str]] = frozenset({"mask"})
    trainable: ClassVar[bool] = False
    supports_relative: ClassVar[bool] = False
    needs_detector: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self.channels = 1

    def forward(self, frame: torch.Tensor) -> Structure:  # pragma: no cover - interface
        raise NotImplementedError

    def attach_detector(self, detector: nn.Module) -> None:
        """Give this masker the shared frozen keypoint detector.

        The detector is deliberately not registered as a submodule: it is shared by several
        maskers, owned and moved by the engine, and never part of a masker's state dict or
        parameters.
        """
        self.__dict__["_detector"] = detector

    @property
    def detector(self) -> nn.Module:
        """The attached keypoint detector; a clear error when none was attached."""
        detector = self.__dict__.get("_detector")
        if detector is None:
            raise CompatibilityError(
                f"{type(self).__name__} needs the shared keypoint detector: build it with "
                "kptoolkit's engine (which attaches one) or call attach_detector(detector)"
            )
        return detector

    def loss_terms(self, batch: dict[str, Any], outputs: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Extra named loss terms this masker trains with (none by default)."""
        return {}

    def perturb(self, structure: Structure, generator: torch.Generator | None = None) -> Structure:
        """Training-time perturbation of the driving structure (identity by default)."""
        return structure
