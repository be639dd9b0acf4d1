"""TPSMM's two ResNet-18 regressors (torchvision trunk, random init, nothing downloaded).

- `keypoint_trunk`: a frame -> num_tps * 5 keypoints (through `to_keypoints`); the masker holds
  it as `fg_encoder`, as the published `kp_detector` entry.
- `BackgroundMotionPredictor`: source and driving frames stacked (6 channels) -> a 3x3 affine
  matrix (last row 0 0 1), initialised to the identity; prefix `bg_encoder.` as `bg_predictor`.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet18


def keypoint_trunk(num_keypoints: int) -> nn.Module:
    """torchvision's ResNet-18 (random init) with a head of num_keypoints * 2 outputs."""
    trunk = resnet18(weights=None)
    trunk.fc = nn.Linear(trunk.fc.in_features, num_keypoints * 2)
    return trunk


def to_keypoints(raw: torch.Tensor, num_keypoints: int) -> torch.Tensor:
    """(B, 2K) regressor outputs -> (B, K, 2) x-y keypoints in [-1, 1] (sigmoid * 2 - 1)."""
    return (torch.sigmoid(raw.float()) * 2 - 1).view(raw.shape[0], num_keypoints, 2)


class BackgroundMotionPredictor(nn.Module):
    """ResNet-18 on the stacked (source, driving) pair -> (B, 3, 3) affine background motion."""

    def __init__(self, num_channels: int = 3) -> None:
        super().__init__()
        self.bg_encoder = resnet18(weights=None)
        self.bg_encoder.conv1 = nn.Conv2d(
            2 * num_channels, 64, kernel_size=7, stride=2, padding=3, bias=False
        )
        self.bg_encoder.fc = nn.Linear(self.bg_encoder.fc.in_features, 6)
        nn.init.zeros_(self.bg_encoder.fc.weight)
        with torch.no_grad():
            self.bg_encoder.fc.bias.copy_(torch.tensor([1.0, 0, 0, 0, 1.0, 0]))

    def forward(self, source: torch.Tensor, driving: torch.Tensor) -> torch.Tensor:
        batch = source.shape[0]
        top = self.bg_encoder(torch.cat([source, driving], dim=1)).float().view(batch, 2, 3)
        last = torch.tensor([0.0, 0.0, 1.0], device=top.device).expand(batch, 1, 3)
        return torch.cat([top, last], dim=1)
