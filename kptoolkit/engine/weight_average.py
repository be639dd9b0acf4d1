"""An exponential moving average of the trained networks' weights (`train.ema_decay`), the copy
a run is evaluated with: reconstruction, animation and the bench read it from the checkpoint
(`models_ema`) in place of the last step's weights; training itself never reads it.

After each optimiser step every floating-point parameter and buffer of the averaged networks
moves towards the live one: `average += (1 - d) * (live - average)`, with the decay warmed up
as `d = min(decay, (1 + step) / (10 + step))` so that the first steps are not held back by the
random initial weights. Integer buffers (batch-norm's step counter) are copied. Batch-norm
running statistics are averaged like weights, so the averaged network's statistics follow its
own weights' history.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn


def warmed_decay(decay: float, step: int) -> float:
    """The decay used after optimiser step `step` (1-based): `decay`, lowered early on."""
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def update_average(average: dict[str, torch.Tensor], live: nn.Module, decay: float) -> None:
    """Move the averaged state `average` (a state dict of `live`'s keys) towards `live`'s."""
    for name, value in live.state_dict().items():
        kept = average[name]
        if kept.is_floating_point():
            kept.lerp_(value.detach().to(kept.dtype), 1.0 - decay)
        else:
            kept.copy_(value)


class WeightAverage:
    """The averaged state of each trained network (by role) of one run."""

    def __init__(self, networks: Mapping[str, nn.Module], decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"train.ema_decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.networks = dict(networks)
        self.states = {
            role: {k: v.detach().clone() for k, v in network.state_dict().items()}
            for role, network in self.networks.items()
        }

    def update(self, step: int) -> None:
        """Average in the weights of optimiser step `step` (1-based)."""
        decay = warmed_decay(self.decay, step)
        for role, network in self.networks.items():
            update_average(self.states[role], network, decay)

    def state_dicts(self) -> dict[str, dict[str, torch.Tensor]]:
        """The averaged weights by role, as a checkpoint stores them (on the CPU)."""
        return {
            role: {k: v.detach().cpu().clone() for k, v in state.items()}
            for role, state in self.states.items()
        }

    def load_state_dicts(self, states: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        """Resume from a checkpoint's averaged weights (a role it lacks restarts from the
        live weights)."""
        for role, state in self.states.items():
            stored = states.get(role)
            if stored is None:
                stored = self.networks[role].state_dict()
            missing = set(state) ^ set(stored)
            if missing:
                raise ValueError(f"averaged weights of '{role}' differ in keys: {sorted(missing)}")
            for key, value in state.items():
                value.copy_(stored[key])


def weight_average(networks: Mapping[str, nn.Module], decay: float) -> WeightAverage | None:
    """The average of a run's trained networks (the GAN discriminator's aside: it is never
    evaluated), or None when `decay` is 0."""
    if not decay:
        return None
    return WeightAverage({r: m for r, m in networks.items() if r != "discriminator"}, decay)
