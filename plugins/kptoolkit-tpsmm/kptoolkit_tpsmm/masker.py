"""`tpsmm_keypoints`: TPSMM's keypoint detector as a kptoolkit masker.

A ResNet-18 regresses num_tps * 5 keypoints per frame; the structure carries them and the frame
itself (the `tpsmm` generator's background predictor reads the driving frame). In animation
(`driving_for_inference(task="animation")`) the frame is dropped, so the generator predicts no
background motion, as the official demo; reconstruction keeps it. The detector is
the masker's own trained network (no shared detector); its state dict is the published
`kp_detector` entry (`official_entries = {"": "kp_detector"}`).

For the `tpsmm_equivariance` loss, `driving_for_training` warps the driving frame by a random
TPS, detects keypoints on it and maps them back (the loss compares them with the driving ones).

With `avd=True` the masker also holds TPSMM's AVD network (`avd_network`, read from the published
entry of that name). Animation (`driving_for_inference(task="animation")`) then drives by the
AVD's keypoints, the source's identity with the driving pose, and without background motion, as
the official demo's `avd` mode; reconstruction is unchanged. The `tpsmm_avd` loss trains it:
the AVD must rebuild the driving keypoints from the source keypoints and a randomly scaled copy
of the driving ones (keypoints detached, so only the AVD learns from it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch
import torch.nn.functional as F

from kptoolkit.maskers.base import Masker
from kptoolkit.registry.presets import CPU64, MICRO, PAPER, Preset, loss_term
from kptoolkit.structure import Structure
from kptoolkit_tpsmm.avd import AVDNetwork, random_scale
from kptoolkit_tpsmm.resnets import keypoint_trunk, to_keypoints
from kptoolkit_tpsmm.tps import RandomTPS

#: the extras `driving_for_training` returns
DRIVING_KEYPOINTS = "tpsmm_driving_keypoints"
WARPED_BACK = "tpsmm_warped_back_keypoints"
AVD_TARGET = "tpsmm_avd_target"
AVD_REBUILT = "tpsmm_avd_rebuilt"

CPU_WEIGHT = 1e-2


def _equivariance(weight: float) -> tuple:
    return (loss_term("tpsmm_equivariance", weight, outputs=[]),)


class TpsmmKeypointMasker(Masker):
    """num_tps * 5 keypoints from a ResNet-18 (TPSMM's `kp_detector`), plus the frame."""

    provides: ClassVar[frozenset[str]] = frozenset({"keypoints", "frame"})
    supports_relative: ClassVar[bool] = True
    needs_detector: ClassVar[bool] = False
    official_entries: ClassVar[dict[str, str]] = {"": "kp_detector"}
    presets: ClassVar[Mapping[str, Preset]] = {
        PAPER: Preset(losses=_equivariance(10.0)),
        CPU64: Preset(losses=_equivariance(CPU_WEIGHT)),
        MICRO: Preset(losses=_equivariance(CPU_WEIGHT)),
    }

    def __init__(
        self,
        num_tps: int = 10,
        sigma_affine: float = 0.05,
        sigma_tps: float = 0.005,
        points_tps: int = 5,
        avd: bool = False,
        id_bottle_size: int = 128,
        pose_bottle_size: int = 128,
        avd_random_scale: float = 0.25,
        animation_background: bool = False,
    ) -> None:
        super().__init__()
        self.num_tps = num_tps
        self.transform_params = {
            "sigma_affine": sigma_affine,
            "sigma_tps": sigma_tps,
            "points_tps": points_tps,
        }
        self.num_keypoints = num_tps * 5
        self.fg_encoder = keypoint_trunk(self.num_keypoints)
        self.avd_network: AVDNetwork | None = None
        if avd:
            self.avd_network = AVDNetwork(num_tps, id_bottle_size, pose_bottle_size)
            self.official_entries = {**type(self).official_entries, "avd_network.": "avd_network"}
        self.avd_random_scale = avd_random_scale
        self.animation_background = animation_background

    def keypoints(self, frame: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, num_tps * 5, 2) in [-1, 1]."""
        return to_keypoints(self.fg_encoder(frame), self.num_keypoints)

    def forward(self, frame: torch.Tensor) -> Structure:
        return Structure(keypoints=self.keypoints(frame), frame=frame)

    def from_keypoints(
        self, keypoints: torch.Tensor, jacobians: torch.Tensor | None, reference: Structure
    ) -> Structure:
        """Relative motion: the keypoints alone (as TPSMM's demo, no background motion)."""
        return Structure(keypoints=keypoints)

    def driving_for_training(
        self,
        source: torch.Tensor,
        source_structure: Structure,
        driving_structure: Structure,
        rng: torch.Generator | None = None,
    ) -> tuple[Structure, dict[str, torch.Tensor]]:
        driving = driving_structure.frame
        if driving is None or driving_structure.keypoints is None:
            return driving_structure, {}
        extras = {}
        if self.avd_network is not None:
            assert source_structure.keypoints is not None
            target = driving_structure.keypoints.detach()
            scaled = random_scale(target, self.avd_random_scale, rng)
            rebuilt = self.avd_network(source_structure.keypoints.detach(), scaled)
            extras = {AVD_TARGET: target, AVD_REBUILT: rebuilt}
        transform = RandomTPS(
            driving.shape[0], generator=rng, device=driving.device, **self.transform_params
        )
        grid = transform.grid(*driving.shape[-2:]).to(driving.dtype)
        moved = F.grid_sample(driving, grid, padding_mode="reflection", align_corners=True)
        warped_back = transform.warp(self.keypoints(moved))
        extras.update({DRIVING_KEYPOINTS: driving_structure.keypoints, WARPED_BACK: warped_back})
        return driving_structure, extras

    def driving_for_inference(
        self,
        source: torch.Tensor,
        source_structure: Structure,
        driving_structure: Structure,
        task: str = "animation",
    ) -> Structure:
        """Animation drives without background motion, as the official demo (unless
        `animation_background`); with the AVD network, absolute animation drives by its
        keypoints. Reconstruction keeps the frame (the official reconstruction predicts the
        background), relative animation (a structure without a frame) its keypoints."""
        if task != "animation":
            return driving_structure
        if self.avd_network is None or driving_structure.frame is None:
            return (
                driving_structure
                if self.animation_background
                else driving_structure.replace(frame=None)
            )
        assert source_structure.keypoints is not None and driving_structure.keypoints is not None
        kp_source = source_structure.keypoints.expand_as(driving_structure.keypoints)
        return Structure(keypoints=self.avd_network(kp_source, driving_structure.keypoints))
