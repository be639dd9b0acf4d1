"""A perceptual term without ImageNet weights: feature distances of a small fixed convolutional
network over an image pyramid.

The papers' perceptual loss compares VGG19 activations of ImageNet weights, which kptoolkit
never downloads. `feature_pyramid` compares the activations of `SmallFeatureNetwork` (three
blocks of two 3x3 convolutions with ReLU, 2x2 max-pooling between blocks): either a seeded
random initialisation (`weights: random`), or a file of trained weights written by
`save_feature_network`. Each layer's distance is the mean absolute difference of the
activations divided by the real frame's mean activation magnitude, so that layers of different
scales weigh alike and the term does not depend on how the random weights happened to scale.
The network is frozen: only the generator's output receives gradients.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from kptoolkit.errors import ConfigError
from kptoolkit.losses.base import Loss, LossInputs, output_tensor
from kptoolkit.losses.image import ImagePyramid, feature_distance

DEFAULT_WIDTHS = (16, 32, 64)
DEFAULT_SCALES = (1.0, 0.5)
MIN_SIZE = 8  # two 2x2 poolings leave a 2x2 map at the deepest block


class SmallFeatureNetwork(nn.Module):
    """Blocks of two 3x3 convolutions with ReLU, max-pooled 2x2 between blocks; returns the
    activation after each block."""

    def __init__(self, widths: Sequence[int] = DEFAULT_WIDTHS) -> None:
        super().__init__()
        if not widths or any(int(w) < 1 for w in widths):
            raise ValueError(f"widths must be positive channel counts, got {list(widths)}")
        self.widths = tuple(int(w) for w in widths)
        blocks, channels = [], 3
        for index, width in enumerate(self.widths):
            layers: list[nn.Module] = [nn.MaxPool2d(2)] if index else []
            layers += [
                nn.Conv2d(channels, width, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(width, width, 3, padding=1),
                nn.ReLU(),
            ]
            blocks.append(nn.Sequential(*layers))
            channels = width
        self.blocks = nn.ModuleList(blocks)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        outputs, x = [], image * 2 - 1  # frames in [0, 1], centred
        for block in self.blocks:
            x = block(x)
            outputs.append(x)
        return outputs


def random_feature_network(widths: Sequence[int], seed: int) -> SmallFeatureNetwork:
    """`SmallFeatureNetwork` with PyTorch's default initialisation drawn from `seed` (the
    process's random state untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SmallFeatureNetwork(widths)


def save_feature_network(network: SmallFeatureNetwork, path: str | Path) -> None:
    """Write a network's widths and weights for `feature_pyramid`'s `weights`."""
    torch.save({"widths": list(network.widths), "state": network.state_dict()}, path)


def load_feature_network(path: str | Path) -> SmallFeatureNetwork:
    """A network written by `save_feature_network` (read with `weights_only=True`)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"feature_pyramid: no such weights file: {path} (give a file written by "
            "save_feature_network, or weights: random)"
        )
    stored = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(stored, dict) or {"widths", "state"} - set(stored):
        raise ConfigError(f"feature_pyramid: {path} is not a feature network file")
    network = SmallFeatureNetwork(stored["widths"])
    network.load_state_dict(stored["state"])
    return network


class FeaturePyramid(Loss):
    """Relative feature L1 of a small fixed conv network (seeded random, or trained weights
    from a file) over an image pyramid: a perceptual term without ImageNet weights."""

    def __init__(
        self,
        weights: str = "random",
        widths: Sequence[int] = DEFAULT_WIDTHS,
        scales: Sequence[float] = DEFAULT_SCALES,
        layer_weights: Sequence[float] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if weights == "random":
            network = random_feature_network(widths, seed)
        else:
            network = load_feature_network(weights)
        self.features = network.requires_grad_(False)
        self.pyramid = ImagePyramid(scales)
        count = len(self.features.widths)
        self.layer_weights = tuple(float(w) for w in (layer_weights or [1.0] * count))
        if len(self.layer_weights) != count:
            raise ValueError(f"layer_weights needs {count} values, one per block")

    def train(self, mode: bool = True) -> FeaturePyramid:
        """Stay in eval mode: the feature network is fixed."""
        return super().train(False)

    def forward(self, inputs: LossInputs, output: str) -> torch.Tensor:
        fake = self.pyramid(output_tensor(inputs, output, "feature_pyramid"))
        real = self.pyramid(inputs.target)
        if min(fake[-1].shape[-2:]) < MIN_SIZE:
            raise ConfigError(
                f"feature_pyramid: the smallest scale of a {inputs.target.shape[-1]} px frame is "
                f"{fake[-1].shape[-1]} px, below {MIN_SIZE} px: use larger params.scales"
            )
        distance = feature_distance(fake, real, self.features, self.layer_weights, relative=True)
        return distance / len(fake)
