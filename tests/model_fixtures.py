"""Tiny CPU-sized detectors and generators for fast tests."""

from __future__ import annotations

from kptoolkit.bench.profiles import MICRO_DETECTOR, MICRO_WIDTHS
from kptoolkit.keypoints.detector import FrozenDetector, KeypointDetector

TINY_DETECTOR = dict(MICRO_DETECTOR)
TINY_TWO_STAGE = dict(MICRO_WIDTHS["two_stage"])


def tiny_detector(num_kp: int = 5, seed: int = 0, frozen: bool = True, **overrides):
    """A small random detector (64 px frames give 10x10 heatmaps and 16x16 masks)."""
    import torch

    torch.manual_seed(seed)
    detector = KeypointDetector(num_kp=num_kp, **{**TINY_DETECTOR, **overrides})
    return FrozenDetector(detector) if frozen else detector
