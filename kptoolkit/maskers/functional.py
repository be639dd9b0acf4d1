"""Pure tensor functions shared by the maskers (the paper's mask post-processing)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

MASK_PADDING = 3  # 58x58 detector heatmaps are zero-padded to 64x64


def normalize_min_max(mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Rescale each sample of (B,C,H,W) to [0,1] over all its pixels and channels."""
    flat = mask.flatten(1)
    low = flat.min(dim=1).values.view(-1, *([1] * (mask.ndim - 1)))
    high = flat.max(dim=1).values.view(-1, *([1] * (mask.ndim - 1)))
    return (mask - low) / (high - low).clamp_min(eps)


def pad_mask(mask: torch.Tensor, padding: int = MASK_PADDING) -> torch.Tensor:
    """Zero-pad a (B,C,h,w) mask by `padding` pixels on every side."""
    return F.pad(mask, (padding, padding, padding, padding))


def finish_mask(mask: torch.Tensor, padding: int = MASK_PADDING) -> torch.Tensor:
    """Min-max normalise per sample, then zero-pad: the last step of every paper mask."""
    return pad_mask(normalize_min_max(mask), padding)
