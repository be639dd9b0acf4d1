"""Maskers built on the shared frozen FOMM keypoint detector (the paper's masks and ablations)."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from kptoolkit.errors import CompatibilityError
from kptoolkit.keypoints.detector import DetectorOutput
from kptoolkit.maskers.base import Masker
from kptoolkit.maskers.functional import (
    CIRCLE_VARIANCE,
    MASK_PADDING,
    all_k_mask,
    gaussian_circles_mask,
    heatmap_sum_mask,
    softmax_sum_mask,
)
from kptoolkit.structure import Structure


class DetectorMasker(Masker):
    """Base of maskers that read the shared detector's output."""

    needs_detector: ClassVar[bool] = True

    def detect(self, frame: torch.Tensor) -> DetectorOutput:
        """Run the attached detector on (B,3,H,W) frames."""
        return self.detector(frame)


class HeatmapSumMasker(DetectorMasker):
    """The paper's main mask: the sum of the detector's K raw logit maps, normalised, padded."""

    def forward(self, frame: torch.Tensor) -> Structure:
        return Structure(mask=heatmap_sum_mask(self.detect(frame).logits))


class SoftmaxSumMasker(DetectorMasker):
    """Ablation: the sum of the K spatial-softmax heatmaps (temperature 0.1), normalised, padded."""

    def forward(self, frame: torch.Tensor) -> Structure:
        return Structure(mask=softmax_sum_mask(self.detect(frame).heatmaps))


class GaussianCirclesMasker(DetectorMasker):
    """The paper's circles mask: a Gaussian (variance 0.003) at each keypoint, summed over K.

    Being drawn from keypoints alone, it supports relative motion: `from_keypoints` draws the
    mask of normalised driving keypoints.
    """

    provides: ClassVar[frozenset[str]] = frozenset({"mask", "keypoints"})
    supports_relative: ClassVar[bool] = True

    def __init__(self, variance: float = CIRCLE_VARIANCE) -> None:
        super().__init__()
        if variance <= 0:
            raise ValueError(f"variance must be positive, got {variance}")
        self.variance = variance

    def forward(self, frame: torch.Tensor) -> Structure:
        out = self.detect(frame)
        height, width = out.logits.shape[-2:]
        mask = gaussian_circles_mask(out.keypoints, height, width, self.variance)
        return Structure(mask=mask, keypoints=out.keypoints)

    def from_keypoints(
        self, keypoints: torch.Tensor, jacobians: torch.Tensor | None, reference: Structure
    ) -> Structure:
        """The structure of (already normalised) keypoints, on the grid of `reference`'s mask."""
        assert reference.mask is not None
        height, width = (s - 2 * MASK_PADDING for s in reference.mask.shape[-2:])
        mask = gaussian_circles_mask(keypoints, height, width, self.variance)
        return Structure(mask=mask, keypoints=keypoints)


class AllKMasker(DetectorMasker):
    """Future-work variant: all K logit maps as a K-channel mask, each channel normalised."""

    def __init__(self, num_kp: int = 10) -> None:
        super().__init__()
        if num_kp < 1:
            raise ValueError(f"num_kp must be >= 1, got {num_kp}")
        self.channels = num_kp

    @classmethod
    def mask_channels_for(cls, params: Mapping[str, Any]) -> int:
        """One channel per keypoint."""
        return int(params.get("num_kp", inspect.signature(cls).parameters["num_kp"].default))

    def forward(self, frame: torch.Tensor) -> Structure:
        logits = self.detect(frame).logits
        if logits.shape[1] != self.channels:
            raise CompatibilityError(
                f"all_k was built for {self.channels} keypoints but the detector has "
                f"{logits.shape[1]}; set masker.params.num_kp={logits.shape[1]}"
            )
        return Structure(mask=all_k_mask(logits))


class FommKeypointsMasker(DetectorMasker):
    """Keypoints and jacobians of the detector, for the FOMM generator (no mask)."""

    provides: ClassVar[frozenset[str]] = frozenset({"keypoints", "jacobians"})
    supports_relative: ClassVar[bool] = True

    def __init__(self) -> None:
        super().__init__()
        self.channels = 0

    @classmethod
    def mask_channels_for(cls, params: Mapping[str, Any]) -> int:
        """None: keypoints and jacobians, no mask."""
        return 0

    def forward(self, frame: torch.Tensor) -> Structure:
        out = self.detect(frame)
        if out.jacobians is None:
            raise CompatibilityError(
                "fomm_keypoints needs jacobians: build the detector with "
                "keypoints.estimate_jacobian: true"
            )
        return Structure(keypoints=out.keypoints, jacobians=out.jacobians)

    def from_keypoints(
        self, keypoints: torch.Tensor, jacobians: torch.Tensor | None, reference: Structure
    ) -> Structure:
        """The structure of (already normalised) keypoints and jacobians."""
        return Structure(keypoints=keypoints, jacobians=jacobians)
