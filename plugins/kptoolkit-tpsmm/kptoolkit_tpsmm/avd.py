"""TPSMM's AVD network (animation via disentanglement): the source keypoints' identity and the
driving keypoints' pose, each encoded by an MLP, decoded into driving keypoints that keep the
source's shape. Layout of the published `avd_network` entry (Linear, BatchNorm1d, ReLU blocks).
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

HIDDEN = (256, 512, 1024)


def _mlp(sizes: list[int]) -> nn.Sequential:
    """Linear -> BatchNorm1d -> ReLU for every hidden size, then a last Linear."""
    layers: list[nn.Module] = []
    for width_in, width_out in itertools.pairwise(sizes[:-1]):
        layers += [nn.Linear(width_in, width_out), nn.BatchNorm1d(width_out), nn.ReLU()]
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    return nn.Sequential(*layers)


class AVDNetwork(nn.Module):
    """(source keypoints, driving keypoints) -> driving keypoints with the source's identity."""

    def __init__(
        self, num_tps: int = 10, id_bottle_size: int = 128, pose_bottle_size: int = 128
    ) -> None:
        super().__init__()
        size = num_tps * 5 * 2
        self.id_encoder = _mlp([size, *HIDDEN, id_bottle_size])
        self.pose_encoder = _mlp([size, *HIDDEN, pose_bottle_size])
        self.decoder = _mlp([pose_bottle_size + id_bottle_size, *reversed(HIDDEN), size])

    def forward(self, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> torch.Tensor:
        """(B, K, 2) each -> (B, K, 2)."""
        batch = kp_source.shape[0]
        pose = self.pose_encoder(kp_driving.reshape(batch, -1))
        identity = self.id_encoder(kp_source.reshape(batch, -1))
        return self.decoder(torch.cat([pose, identity], dim=1)).view_as(kp_source)


def random_scale(
    keypoints: torch.Tensor, scale: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Keypoints (B, K, 2) scaled per sample and axis by a factor drawn from [1 - s, 1 + s]
    (the AVD training augmentation)."""
    factors = torch.rand(keypoints.shape[0], 1, 2, generator=generator) * (2 * scale) + 1 - scale
    return keypoints * factors.to(keypoints.device, keypoints.dtype)
