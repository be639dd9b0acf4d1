"""`tpsmm`: the Thin-Plate Spline Motion Model's generator (Zhao & Zhang, CVPR 2022).

It holds the three published networks under their checkpoint names: `dense_motion_network`,
`inpainting_network` and (with `bg`) `bg_predictor`; `official_entries` lets kptoolkit assemble
its state dict from an official file's top-level entries of those names. The keypoints come from
the `tpsmm_keypoints` masker (its `kp_detector`), which also passes each frame on, so that the
background predictor sees the driving frame.

While training, the contribution maps use keypoint dropout (whole TPS transforms dropped with
probability p, rising linearly from `dropout_startp` by `dropout_maxp / dropout_inc_epoch` per
epoch up to `dropout_maxp`, until epoch `dropout_epoch`), and the outputs include the two scalar
terms the `tpsmm_warp` and `tpsmm_background` losses read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch

from kptoolkit.generators.base import Generator
from kptoolkit.registry.presets import CPU64, MICRO, PAPER, Preset, loss_term
from kptoolkit.structure import Structure
from kptoolkit_tpsmm.dense_motion import POINTS_PER_TPS, DenseMotionNetwork
from kptoolkit_tpsmm.inpainting import InpaintingNetwork
from kptoolkit_tpsmm.resnets import BackgroundMotionPredictor

#: the output names of the training-only scalar terms
WARP_OUTPUT = "tpsmm_warp"
BACKGROUND_OUTPUT = "tpsmm_background"

CPU_WEIGHT = 1e-2  # the published weight 10, scaled like FOMM's equivariance on the CPU presets


def _losses(weight: float) -> tuple:
    return (
        loss_term("tpsmm_warp", weight, outputs=[]),
        loss_term("tpsmm_background", weight, outputs=[]),
    )


def dropout_probability(
    epoch: int, dropout_epoch: int, dropout_maxp: float, dropout_startp: float, inc_epoch: int
) -> float:
    """TPSMM's keypoint-dropout schedule: 0 from `dropout_epoch` on, else
    min(epoch / inc_epoch * maxp + startp, maxp)."""
    if epoch >= dropout_epoch:
        return 0.0
    return min(epoch / max(inc_epoch, 1) * dropout_maxp + dropout_startp, dropout_maxp)


class TpsmmGenerator(Generator):
    """Dense motion from K thin-plate splines (+ background affine), then inpainting."""

    requires: ClassVar[frozenset[str]] = frozenset({"keypoints"})
    natural_masker: ClassVar[str] = "tpsmm_keypoints"
    baseline_label: ClassVar[str | None] = "TPSMM"
    warped_output: ClassVar[str | None] = "deformed"
    official_entries: ClassVar[dict[str, str]] = {
        "dense_motion_network.": "dense_motion_network",
        "inpainting_network.": "inpainting_network",
        "bg_predictor.": "bg_predictor",
    }
    presets: ClassVar[Mapping[str, Preset]] = {
        PAPER: Preset(losses=_losses(10.0)),
        CPU64: Preset(
            params={
                "block_expansion": 16,
                "max_features": 128,
                "dense_block_expansion": 16,
                "dense_max_features": 128,
                "dense_num_blocks": 3,
            },
            losses=_losses(CPU_WEIGHT),
        ),
        MICRO: Preset(
            params={
                "block_expansion": 8,
                "max_features": 64,
                "dense_block_expansion": 8,
                "dense_max_features": 32,
                "dense_num_blocks": 2,
            },
            losses=_losses(CPU_WEIGHT),
        ),
    }

    def __init__(
        self,
        num_tps: int = 10,
        num_channels: int = 3,
        block_expansion: int = 64,
        max_features: int = 512,
        dense_block_expansion: int = 64,
        dense_max_features: int = 1024,
        dense_num_blocks: int = 5,
        scale_factor: float = 0.25,
        kp_variance: float = 0.01,
        bg: bool = True,
        bg_start: int = 0,
        dropout_epoch: int = 35,
        dropout_maxp: float = 0.7,
        dropout_startp: float = 0.0,
        dropout_inc_epoch: int = 10,
    ) -> None:
        super().__init__()
        self.num_tps = num_tps
        self.dense_motion_network = DenseMotionNetwork(
            num_tps,
            num_channels,
            dense_block_expansion,
            dense_max_features,
            dense_num_blocks,
            scale_factor,
            kp_variance,
        )
        self.inpainting_network = InpaintingNetwork(num_channels, block_expansion, max_features)
        self.bg_predictor = BackgroundMotionPredictor(num_channels) if bg else None
        if not bg:
            self.official_entries = {
                k: v for k, v in type(self).official_entries.items() if v != "bg_predictor"
            }
        self.bg_start = bg_start
        self.schedule = (dropout_epoch, dropout_maxp, dropout_startp, dropout_inc_epoch)
        self.epoch = 0

    def set_training_progress(self, step: int, epoch: int) -> None:
        """Told by kptoolkit's trainer before each step: the epoch drives keypoint dropout and
        the background predictor's start."""
        self.epoch = epoch

    @property
    def dropout_p(self) -> float:
        """The keypoint-dropout probability now (0 outside training)."""
        return dropout_probability(self.epoch, *self.schedule) if self.training else 0.0

    def forward(
        self, source: torch.Tensor, source_structure: Structure, driving_structure: Structure
    ) -> dict[str, torch.Tensor]:
        kp_source, kp_driving = source_structure.keypoints, driving_structure.keypoints
        if kp_source is None or kp_driving is None:
            raise ValueError("tpsmm needs keypoints in both the source and driving structure")
        expected = self.num_tps * POINTS_PER_TPS
        if kp_source.shape[1] != expected or kp_driving.shape[1] != expected:
            raise ValueError(
                f"tpsmm was built for num_tps={self.num_tps} ({expected} keypoints) but got "
                f"{kp_source.shape[1]} source and {kp_driving.shape[1]} driving keypoints; give "
                "the masker and the generator the same num_tps"
            )
        driving = driving_structure.frame
        use_bg = self.bg_predictor is not None and driving is not None
        use_bg = use_bg and (not self.training or self.epoch >= self.bg_start)
        background = self.bg_predictor(source, driving) if use_bg else None
        motion = self.dense_motion_network(
            source, kp_source, kp_driving, background, dropout_p=self.dropout_p
        )
        generated = self.inpainting_network(source, motion)
        warped_maps = generated.pop("warped_maps")
        outputs = {
            **generated,
            "deformation": motion["deformation"],
            "contribution_maps": motion["contribution_maps"],
            "occlusion_map": motion["occlusion_maps"][-1],
        }
        if self.training and driving is not None:
            targets = self.inpainting_network.driving_maps(driving, motion["occlusion_maps"])
            outputs[WARP_OUTPUT] = sum(
                (target - warped_maps[-i - 1]).abs().mean() for i, target in enumerate(targets)
            )
            if background is not None:
                assert self.bg_predictor is not None
                cycle = background @ self.bg_predictor(driving, source)
                eye = torch.eye(3, device=cycle.device)
                outputs[BACKGROUND_OUTPUT] = (eye - cycle).abs().mean()
        return outputs
