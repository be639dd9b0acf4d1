"""Pretrained backbones for perceptual losses and LPIPS, from local files only (never downloads).

A weights argument is a path to a torchvision or timm checkpoint (`.pth`/`.pt` read with
`weights_only=True`, or `.safetensors`), or the word "random" for an untrained network (which is
not the published loss: useful for smoke runs and tests). With no weights at all, the loss
fails at construction and says what to provide.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from kptoolkit.errors import ConfigError
from kptoolkit.utils.checkpoint_io import CheckpointError, read_checkpoint

RANDOM = "random"
VGG19_LAYERS = 30  # torchvision vgg19.features[0:30] reaches relu5_1
VGG19_SLICES = ((0, 2), (2, 7), (7, 12), (12, 21), (21, 30))  # relu1_1 ... relu5_1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def require_weights(weights: str | None, loss: str, network: str) -> str:
    """The weights argument, or a `ConfigError` telling the user what to provide."""
    if weights:
        return weights
    raise ConfigError(
        f"{loss} needs ImageNet {network} weights, and kptoolkit never downloads them: set "
        f"params.weights to a local torchvision or timm {network} file (.pth or .safetensors), "
        f"or to '{RANDOM}' for an untrained network (not the published loss)"
    )


def read_state(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a .pth/.pt (weights only) or .safetensors file."""
    path = Path(path)
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise CheckpointError(f"weights file not found: {path}")
        from safetensors.torch import load_file

        return load_file(str(path))
    state = read_checkpoint(path)
    for key in ("state_dict", "model"):  # common wrappers around the plain state dict
        if key in state and isinstance(state[key], dict):
            state = state[key]
    return state


def _load_features(features: nn.Sequential, state: dict, path: str, network: str) -> None:
    try:
        missing, unexpected = features.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise CheckpointError(f"{path} is not a {network} file: {exc}") from None
    if missing or unexpected:
        raise CheckpointError(
            f"{path} is not a {network} file (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )


def _features_state(state: dict[str, torch.Tensor], count: int, path: str) -> dict:
    features = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    if not features:  # a file of the feature extractor alone
        features = dict(state)
    kept = {k: v for k, v in features.items() if int(k.split(".")[0]) < count}
    if not kept:
        raise CheckpointError(f"{path} has no `features.*` convolution weights")
    return kept


def _uninitialised_features(builder: Callable[..., nn.Module]) -> nn.Sequential:
    """A torchvision model's `features` with allocated but uninitialised weights.

    Building on the meta device skips initialising the large classifier that is thrown away.
    """
    with torch.device("meta"):
        model = builder(weights=None)
    return model.features.to_empty(device="cpu")


def vgg19_features(weights: str) -> nn.Sequential:
    """torchvision's vgg19 `features[0:30]`, loaded from `weights` (or random), frozen."""
    from torchvision.models import vgg19
    from torchvision.models.vgg import cfgs, make_layers

    if weights == RANDOM:
        features = make_layers(cfgs["E"])[:VGG19_LAYERS]  # initialised, without a classifier
    else:
        features = _uninitialised_features(vgg19)[:VGG19_LAYERS]
        state = _features_state(read_state(weights), VGG19_LAYERS, weights)
        _load_features(features, state, weights, "VGG19")
    return features.eval().requires_grad_(False)


def alexnet_features(weights: str) -> nn.Sequential:
    """torchvision's alexnet `features`, loaded from `weights` (or random), frozen."""
    from torchvision.models import alexnet

    if weights == RANDOM:
        features = alexnet(weights=None).features
    else:
        features = _uninitialised_features(alexnet)
        state = _features_state(read_state(weights), len(features), weights)
        _load_features(features, state, weights, "AlexNet")
    return features.eval().requires_grad_(False)


def build_lpips(weights: str | None, what: str = "lpips") -> nn.Module:
    """LPIPS (AlexNet) with its shipped linear heads and a backbone from a local file."""
    import lpips

    weights = require_weights(weights, what, "AlexNet")
    model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
    if weights != RANDOM:
        source = alexnet_features(weights)
        for slice_module in model.net.children():
            for index, layer in slice_module.named_children():
                layer.load_state_dict(source[int(index)].state_dict())
    return model.eval().requires_grad_(False)
