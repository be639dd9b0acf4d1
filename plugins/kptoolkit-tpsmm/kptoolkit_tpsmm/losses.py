"""TPSMM's three extra loss terms (unweighted; the presets weigh them).

- `tpsmm_equivariance`: mean |kp(driving) - T(kp(T^-1 driving))| for a random TPS T, from the
  extras of the `tpsmm_keypoints` masker's `driving_for_training`;
- `tpsmm_warp`: the warp loss, sum over the four encoder levels of the mean |warped source
  features - driving features| (both occlusion-masked), computed by the generator in training;
- `tpsmm_background`: mean |I - A(s->d) A(d->s)| of the background affines, likewise;
- `tpsmm_avd`: mean |driving keypoints - AVD(source keypoints, scaled driving keypoints)| (the
  masker's AVD network, `avd=True`).

The reconstruction loss itself is kptoolkit's `perceptual_pyramid` (or `l1_pyramid`).
"""

from __future__ import annotations

import torch

from kptoolkit.losses.base import Loss, LossInputs
from kptoolkit_tpsmm.generator import BACKGROUND_OUTPUT, WARP_OUTPUT
from kptoolkit_tpsmm.masker import AVD_REBUILT, AVD_TARGET, DRIVING_KEYPOINTS, WARPED_BACK


def _zero(inputs: LossInputs) -> torch.Tensor:
    return inputs.target.new_zeros(())


class TpsmmEquivariance(Loss):
    """Equivariance of the TPSMM keypoints under a random thin-plate spline."""

    reads_extras = True

    def forward(self, inputs: LossInputs, output: str = "") -> torch.Tensor:
        if WARPED_BACK not in inputs.extras:
            return _zero(inputs)
        return (inputs.extras[DRIVING_KEYPOINTS] - inputs.extras[WARPED_BACK]).abs().mean()


class _GeneratorTerm(Loss):
    key = ""

    def forward(self, inputs: LossInputs, output: str = "") -> torch.Tensor:
        value = inputs.outputs.get(self.key)
        return _zero(inputs) if value is None else value


class TpsmmWarp(_GeneratorTerm):
    """The warp loss the `tpsmm` generator computes while training."""

    key = WARP_OUTPUT


class TpsmmBackground(_GeneratorTerm):
    """The background cycle loss the `tpsmm` generator computes while training."""

    key = BACKGROUND_OUTPUT


class TpsmmAvd(Loss):
    """The AVD network's keypoint reconstruction loss (TPSMM's `rec_kp`)."""

    reads_extras = True

    def forward(self, inputs: LossInputs, output: str = "") -> torch.Tensor:
        if AVD_REBUILT not in inputs.extras:
            return _zero(inputs)
        return (inputs.extras[AVD_TARGET] - inputs.extras[AVD_REBUILT]).abs().mean()
