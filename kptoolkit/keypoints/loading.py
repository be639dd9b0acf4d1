"""Building a keypoint detector from a checkpoint (official FOMM or kptoolkit)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from kptoolkit.keypoints.detector import FrozenDetector, KeypointDetector
from kptoolkit.utils.checkpoint_io import CheckpointError, load_strict, model_state, read_checkpoint


def infer_detector_params(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Detector constructor parameters read off a state dict's shapes (temperature excepted)."""
    try:
        down_blocks = sorted(
            {int(k.split(".")[3]) for k in state if k.startswith("predictor.encoder.down_blocks.")}
        )
        widths = [
            state[f"predictor.encoder.down_blocks.{i}.conv.weight"].shape[0] for i in down_blocks
        ]
        last_up = max(
            int(k.split(".")[3]) for k in state if k.startswith("predictor.decoder.up_blocks.")
        )
        kp_weight = state["kp.weight"]
    except (KeyError, ValueError, IndexError) as exc:
        raise CheckpointError(f"not a FOMM keypoint-detector state dict: {exc}") from None
    params: dict[str, Any] = {
        "num_kp": int(kp_weight.shape[0]),
        "num_channels": int(state["predictor.encoder.down_blocks.0.conv.weight"].shape[1]),
        "block_expansion": int(
            state[f"predictor.decoder.up_blocks.{last_up}.conv.weight"].shape[0]
        ),
        "max_features": int(max(widths)),
        "num_blocks": len(down_blocks),
        "estimate_jacobian": "jacobian.weight" in state,
        "scale_factor": 1.0,
    }
    if "jacobian.weight" in state:
        params["single_jacobian_map"] = (
            state["jacobian.weight"].shape[0] == 4 and params["num_kp"] > 1
        )
    if "down.weight" in state:
        size = state["down.weight"].shape[-1]
        for stride in range(2, 17):  # kernel size 2*round(4*sigma)+1 with sigma = (stride-1)/2
            if 2 * round(4 * (stride - 1) / 2) + 1 == size:
                params["scale_factor"] = 1 / stride
                break
        else:
            raise CheckpointError(f"cannot infer scale_factor from a {size}x{size} blur kernel")
    return params


def load_detector(
    path: str | Path, *, temperature: float = 0.1, frozen: bool = True, **overrides: Any
) -> KeypointDetector | FrozenDetector:
    """A detector from a checkpoint; its shape is inferred, `overrides` must agree with it."""
    checkpoint = read_checkpoint(path)
    state = model_state(checkpoint, "detector", str(path))
    params = infer_detector_params(state)
    for key, value in overrides.items():
        if key in params and not _same(params[key], value):
            raise CheckpointError(
                f"{path}: the checkpoint's detector has {key}={params[key]}, the config asks for "
                f"{key}={value}; change the config (keypoints.{key}) or the checkpoint"
            )
    detector = KeypointDetector(**{**params, **overrides}, temperature=temperature)
    load_strict(detector, state, f"keypoint detector in {path}")
    return FrozenDetector(detector) if frozen else detector


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b))
    return a == b
