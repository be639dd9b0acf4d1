"""The `Masker` interface shared by every built-in and plugin masker."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from kptoolkit.errors import CompatibilityError
from kptoolkit.nn.component import Component
from kptoolkit.structure import Structure

INFERENCE_TASKS = ("reconstruction", "animation")


class Masker(Component):
    """Base class: `forward(frame (B,3,H,W) in [0,1]) -> Structure`.

    Subclasses declare what they `provide` ({"mask"}, {"keypoints", "jacobians"}, {"frame"}),
    their mask `channels` (`mask_channels_for`), whether they support relative motion, and
    whether they need the shared frozen keypoint detector. A masker with parameters that require
    gradients trains with the generator, with an optimiser of its own.
    """

    HOOKS: ClassVar[tuple[str, ...]] = (
        *Component.HOOKS,
        "provides",
        "supports_relative",
        "needs_detector",
        "needs_groundtruth",
        "mask_channels_for",
        "from_keypoints",
        "driving_for_training",
        "driving_for_inference",
    )

    #: the Structure fields the masker fills ({"mask"}, {"keypoints", "jacobians"}, ...)
    provides: ClassVar[frozenset[str]] = frozenset({"mask"})
    #: whether `from_keypoints` works, so that animation can use FOMM's relative motion
    supports_relative: ClassVar[bool] = False
    #: whether the masker reads the shared frozen keypoint detector (`attach_detector`)
    needs_detector: ClassVar[bool] = False
    #: True for maskers drawn from ground-truth joints: the engine passes `joints=` (B, J, 2)
    needs_groundtruth: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self.channels = 1

    @classmethod
    def mask_channels_for(cls, params: Mapping[str, Any]) -> int:
        """The mask channels a masker built with `params` gives (its `channels`), known before
        it is built; override when they depend on the parameters."""
        return 1

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

    def from_keypoints(
        self, keypoints: torch.Tensor, jacobians: torch.Tensor | None, reference: Structure
    ) -> Structure:
        """The structure of given keypoints (relative motion); only maskers that support it."""
        raise CompatibilityError(
            f"{type(self).__name__} draws its structure from pixels, not keypoints, so it does "
            "not support relative motion; use absolute animation or a masker such as "
            "gaussian_circles or fomm_keypoints"
        )

    def driving_for_training(
        self,
        source: torch.Tensor,
        source_structure: Structure,
        driving_structure: Structure,
        rng: torch.Generator | None = None,
    ) -> tuple[Structure, dict[str, torch.Tensor]]:
        """The driving structure the generator trains on, plus tensors for the masker's losses.

        The default passes the driving structure through; the perturbed-mask baseline perturbs
        it here and runs its refinement network.
        """
        return driving_structure, {}

    def driving_for_inference(
        self,
        source: torch.Tensor,
        source_structure: Structure,
        driving_structure: Structure,
        task: str = "animation",
    ) -> Structure:
        """The driving structure the generator sees at inference.

        `task` is "reconstruction" (source and driving from one video) or "animation" (driving
        from another video), for maskers that treat the two differently.
        """
        return driving_structure
