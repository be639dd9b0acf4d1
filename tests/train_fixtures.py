"""Tiny experiments for training tests: small widths, a few 64 px puppet videos, no workers."""

from __future__ import annotations

from pathlib import Path

import torch
from model_fixtures import TINY_DETECTOR

from kptoolkit.bench.profiles import MICRO_WIDTHS
from kptoolkit.config import ExperimentConfig, apply_overrides
from kptoolkit.keypoints.detector import KeypointDetector

TINY_COMPONENTS = {
    **MICRO_WIDTHS,
    "all_k": {"num_kp": 5},
    "learned_projection": {"num_kp": 5},
}


def tiny_config(*overrides: str) -> ExperimentConfig:
    """A config that trains in a fraction of a second per step."""
    config = ExperimentConfig(name="tiny")
    config.component_params = {k: dict(v) for k, v in TINY_COMPONENTS.items()}
    config.keypoints.num_kp = 5
    config.keypoints.block_expansion = TINY_DETECTOR["block_expansion"]
    config.keypoints.max_features = TINY_DETECTOR["max_features"]
    config.keypoints.num_blocks = TINY_DETECTOR["num_blocks"]
    config.keypoints.scale_factor = 0.25
    config.data.params = {"videos": 6, "frames": 6, "workers": 1}
    config.data.num_workers = 0
    config.train.batch_size = 2
    config.train.steps = 2
    config.train.log_every = 1
    return apply_overrides(config, overrides)


def tiny_kp_checkpoint(directory: Path) -> Path:
    """An official-layout FOMM file holding a tiny random detector."""
    torch.manual_seed(0)
    path = directory / "tiny-cpk.pth.tar"
    torch.save({"kp_detector": KeypointDetector(num_kp=5, **TINY_DETECTOR).state_dict()}, path)
    return path
