"""Tiny CPU-sized detectors and generators for fast tests."""

from __future__ import annotations

from kptoolkit.keypoints.detector import FrozenDetector, KeypointDetector

TINY_DETECTOR = {"block_expansion": 4, "max_features": 16, "num_blocks": 3}
TINY_TWO_STAGE = {
    "features": 16,
    "num_residual_blocks": 2,
    "refine_block_expansion": 4,
    "refine_max_features": 16,
    "refine_num_blocks": 3,
}


def tiny_detector(num_kp: int = 5, seed: int = 0, frozen: bool = True, **overrides):
    """A small random detector (64 px frames give 10x10 heatmaps and 16x16 masks)."""
    import torch

    torch.manual_seed(seed)
    detector = KeypointDetector(num_kp=num_kp, **{**TINY_DETECTOR, **overrides})
    return FrozenDetector(detector) if frozen else detector
