"""The oracle masker: Gaussian circles at the ground-truth joints (synthetic data only).

A keypoint mask can be no better than the keypoints it is drawn from. `gt_circles` draws the
paper's circles mask at the true joints of a synthetic puppet instead of a detector's keypoints,
so `gt_circles + two_stage`, trained with the same budget as the other rows, is the upper bound
of keypoint-mask methods on that data: the bench's oracle row. Only datasets that carry
ground-truth joints (`groundtruth/<split>/<video>.npz`, as the synthetic puppets do) can feed
it; the engine passes the joints of every frame it computes a structure for.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from kptoolkit.errors import CompatibilityError
from kptoolkit.maskers.base import Masker
from kptoolkit.maskers.functional import CIRCLE_VARIANCE, MASK_PADDING, gaussian_circles_mask
from kptoolkit.structure import Structure


def frame_to_mask_grid(
    joints: torch.Tensor, size: int, padding: int = MASK_PADDING
) -> torch.Tensor:
    """Frame coordinates in [-1, 1] -> coordinates of the unpadded (size - 2 padding) grid of
    a mask whose padded `size` covers the whole frame (the detector's valid 7x7 convolution
    leaves such a border around its heatmaps)."""
    inner = size - 2 * padding
    return joints * (size - 1) / (inner - 1)


class GtCirclesMasker(Masker):
    """Oracle: the circles mask (variance 0.003) at the ground-truth joints, one channel.

    The mask is `scale_factor` times the frame's size (as the detector's padded heatmaps are),
    circles at every visible joint (a NaN joint is left out).
    """

    needs_groundtruth: ClassVar[bool] = True

    def __init__(self, scale_factor: float = 0.25, variance: float = CIRCLE_VARIANCE) -> None:
        super().__init__()
        if not 0 < scale_factor <= 1:
            raise ValueError(f"scale_factor must be in (0, 1], got {scale_factor}")
        if variance <= 0:
            raise ValueError(f"variance must be positive, got {variance}")
        self.scale_factor = scale_factor
        self.variance = variance

    def forward(self, frame: torch.Tensor, joints: torch.Tensor | None = None) -> Structure:
        if joints is None:
            raise CompatibilityError(
                "gt_circles draws ground-truth joints, and none were given: it runs only on "
                "datasets with groundtruth/<split>/<video>.npz (the synthetic puppets), through "
                "kptoolkit's train / reconstruct / bench; it cannot animate other videos"
            )
        if joints.ndim != 3 or joints.shape[0] != frame.shape[0] or joints.shape[-1] != 2:
            raise CompatibilityError(
                f"gt_circles needs (B, J, 2) joints for {frame.shape[0]} frames, got "
                f"{tuple(joints.shape)}"
            )
        size = round(frame.shape[-2] * self.scale_factor)
        width = round(frame.shape[-1] * self.scale_factor)
        inner = (size - 2 * MASK_PADDING, width - 2 * MASK_PADDING)
        points = frame_to_mask_grid(joints.to(frame.dtype), size)
        visible = ~torch.isnan(points).any(dim=-1, keepdim=True)
        # a hidden joint goes far outside the grid: its circle adds nothing
        points = torch.where(visible, points, torch.full_like(points, 1e3))
        mask = gaussian_circles_mask(points, *inner, self.variance)
        return Structure(mask=mask)
