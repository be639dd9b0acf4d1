"""Metrics on detector outputs: AKD and MKR on keypoints, AED on identity embeddings.

Keypoints are (B, J, 2) in pixels, (x, y), with -1 for a missing joint; as in the public
pose-evaluation scripts (`cmp_with_missing.py`), a joint counts as missing when its x coordinate
is -1, whatever its y. A joint with a NaN or infinite coordinate counts as missing too (rather
than making its frame's value NaN). Definitions follow FACTS section 7 and those scripts:

- AKD: per frame, the mean absolute coordinate difference |real - fake| over the coordinates of
  the joints present in both frames (pixels, no square root, no normalisation). A frame with no
  joint present in both has no AKD value and is left out (as is a frame whose generated
  keypoints are all missing: `cmp_kp.py` skips a frame with no generated face).
- MKR: per frame, (# joints present in the real frame but missing in the fake one) /
  (# joints present in the real frame). A frame with no real joint is skipped.
- AED: per frame, the squared L2 distance (sum of squared differences, no square root) of the
  real and fake identity embeddings.
"""

from __future__ import annotations

import torch

from kptoolkit.metrics.base import IDENTITY, POSE, FramePairs, Metric

MISSING = -1.0


def _keypoint_pair(pairs: FramePairs, metric: str) -> tuple[torch.Tensor, torch.Tensor]:
    real, fake = pairs.real_keypoints, pairs.fake_keypoints
    if real is None or fake is None:
        raise ValueError(
            f"{metric} needs real_keypoints and fake_keypoints in FramePairs (from a pose "
            "evaluator); they are missing"
        )
    if real.ndim != 3 or real.shape != fake.shape:
        raise ValueError(
            f"{metric} needs (B, J, 2) keypoints of equal shapes, got real {tuple(real.shape)} "
            f"and fake {tuple(fake.shape)}"
        )
    return real.double(), fake.double().to(real.device)


def present(keypoints: torch.Tensor) -> torch.Tensor:
    """(B, J) True where a joint is detected: its x coordinate is not -1 and neither coordinate
    is NaN or infinite."""
    return (keypoints[..., 0] != MISSING) & torch.isfinite(keypoints).all(dim=-1)


def _rate(total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """total / count per frame, NaN (a skipped frame) where count is 0."""
    nan = torch.full_like(total, float("nan"))
    return torch.where(count > 0, total / count.clamp(min=1), nan)


def akd_per_frame(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """(B,) AKD of (B, J, 2) keypoint pairs; NaN for a frame with no joint present in both."""
    both = present(real) & present(fake)
    difference = (real - fake).abs().sum(dim=-1)  # over coordinates
    total = torch.where(both, difference, torch.zeros_like(difference)).sum(dim=-1)
    return _rate(total, both.sum(dim=-1) * real.shape[-1])


def mkr_per_frame(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """(B,) MKR of (B, J, 2) keypoint pairs; NaN for a frame with no joint in the real one."""
    in_real = present(real)
    lost = (in_real & ~present(fake)).sum(dim=-1).double()
    return _rate(lost, in_real.sum(dim=-1).double())


class AkdMetric(Metric):
    """Average keypoint distance (pixels): mean |real - fake| over joints present in both."""

    requires = frozenset({POSE})
    higher_is_better = False

    def frame_values(self, pairs: FramePairs) -> torch.Tensor:
        return akd_per_frame(*_keypoint_pair(pairs, "akd"))


class MkrMetric(Metric):
    """Missing keypoint rate: share of the real frame's joints that the fake frame lacks."""

    requires = frozenset({POSE})
    higher_is_better = False

    def frame_values(self, pairs: FramePairs) -> torch.Tensor:
        return mkr_per_frame(*_keypoint_pair(pairs, "mkr"))


class AedMetric(Metric):
    """Average euclidean distance of identity embeddings, squared (no square root)."""

    requires = frozenset({IDENTITY})
    higher_is_better = False

    def frame_values(self, pairs: FramePairs) -> torch.Tensor:
        real, fake = pairs.real_embeddings, pairs.fake_embeddings
        if real is None or fake is None:
            raise ValueError(
                "aed needs real_embeddings and fake_embeddings in FramePairs (from an identity "
                "evaluator); they are missing"
            )
        real, fake = real.double().flatten(1), fake.double().to(real.device).flatten(1)
        if real.shape != fake.shape:
            raise ValueError(
                f"aed needs embeddings of equal shapes, got real {tuple(real.shape)} and fake "
                f"{tuple(fake.shape)}"
            )
        return (real - fake).pow(2).sum(dim=1)
