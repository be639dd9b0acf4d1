"""The FOMM keypoint detector: hourglass -> K logit maps -> softmax keypoints (+ jacobians)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import attrs
import torch
from torch import nn

from kptoolkit.keypoints.functional import (
    jacobians_from_maps,
    keypoints_from_heatmaps,
    spatial_softmax,
)
from kptoolkit.nn.anti_alias import AntiAliasDownscale
from kptoolkit.nn.component import Component
from kptoolkit.nn.float32 import float32_call
from kptoolkit.nn.hourglass import Hourglass
from kptoolkit.registry.presets import CPU64, MICRO, PAPER, Preset

KP_KERNEL = 7


@attrs.frozen
class DetectorOutput:
    """Raw logits and softmax heatmaps (B,K,h,w), keypoints (B,K,2), jacobians (B,K,2,2)."""

    logits: torch.Tensor
    heatmaps: torch.Tensor
    keypoints: torch.Tensor
    jacobians: torch.Tensor | None = None


class KeypointDetector(Component):
    """FOMM keypoint detector; parameter names match official `kp_detector` state dicts.

    The frame is downscaled by `scale_factor` with an anti-aliasing blur, an hourglass predicts
    features, a 7x7 convolution (no padding) gives K logit maps (58x58 for a 256 input), and the
    keypoints are the expected coordinates of their spatial softmax at `temperature`. With
    `estimate_jacobian`, a second 7x7 convolution gives 2x2 jacobians, initialised to identity.
    """

    presets: ClassVar[Mapping[str, Preset]] = {
        PAPER: Preset(),
        CPU64: Preset(
            params={
                "block_expansion": 16,
                "max_features": 128,
                "num_blocks": 4,
                "scale_factor": 0.5,
            }
        ),
        MICRO: Preset(
            params={
                "num_kp": 5,
                "block_expansion": 4,
                "max_features": 16,
                "num_blocks": 3,
                "scale_factor": 0.25,
            }
        ),
    }

    def __init__(
        self,
        num_kp: int = 10,
        num_channels: int = 3,
        temperature: float = 0.1,
        block_expansion: int = 32,
        max_features: int = 1024,
        num_blocks: int = 5,
        scale_factor: float = 0.25,
        estimate_jacobian: bool = True,
        single_jacobian_map: bool = False,
    ) -> None:
        super().__init__()
        if num_kp < 1:
            raise ValueError(f"num_kp must be >= 1, got {num_kp}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.num_kp = num_kp
        self.temperature = temperature
        self.scale_factor = scale_factor
        self.predictor = Hourglass(block_expansion, num_channels, num_blocks, max_features)
        self.kp = nn.Conv2d(self.predictor.out_filters, num_kp, KP_KERNEL)
        self.jacobian: nn.Conv2d | None = None
        if estimate_jacobian:
            maps = 1 if single_jacobian_map else num_kp
            self.jacobian = nn.Conv2d(self.predictor.out_filters, 4 * maps, KP_KERNEL)
            nn.init.zeros_(self.jacobian.weight)
            with torch.no_grad():
                self.jacobian.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0]).repeat(maps))
        self.down = AntiAliasDownscale(num_channels, scale_factor) if scale_factor != 1 else None

    def heatmap_size(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) of the logit maps for a (height, width) frame (58x58 for 256x256)."""
        stride = round(1 / self.scale_factor)
        return height // stride - (KP_KERNEL - 1), width // stride - (KP_KERNEL - 1)

    def forward(self, frame: torch.Tensor) -> DetectorOutput:
        """Detect keypoints in (B,C,H,W) frames in [0, 1]."""
        x = self.down(frame) if self.down is not None else frame
        features = self.predictor(x)
        logits = float32_call(self.kp, features)
        heatmaps = spatial_softmax(logits, self.temperature)
        keypoints = keypoints_from_heatmaps(heatmaps)
        jacobians = None
        if self.jacobian is not None:
            jacobians = jacobians_from_maps(heatmaps, float32_call(self.jacobian, features))
        return DetectorOutput(logits, heatmaps, keypoints, jacobians)


class FrozenDetector(nn.Module):
    """A detector that cannot change: always in eval mode, no gradients, no BatchNorm updates.

    (The official keypoint-mask code leaves its detector in train mode, so BatchNorm statistics
    drift while the generator trains; this wrapper is the fix.)
    """

    def __init__(self, detector: KeypointDetector) -> None:
        super().__init__()
        self.detector = detector
        self.detector.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> FrozenDetector:
        """Ignore requests for training mode: a frozen detector stays in eval mode."""
        return super().train(False)

    @property
    def num_kp(self) -> int:
        """Number of keypoints."""
        return self.detector.num_kp

    def heatmap_size(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) of the logit maps for a (height, width) frame."""
        return self.detector.heatmap_size(height, width)

    def forward(self, frame: torch.Tensor) -> DetectorOutput:
        """Detect without building an autograd graph."""
        with torch.no_grad():
            return self.detector(frame)
