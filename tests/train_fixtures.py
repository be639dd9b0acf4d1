"""Tiny experiments for training tests: small widths, a few 64 px puppet videos, no workers."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from model_fixtures import TINY_DETECTOR

from kptoolkit.config.schema import ExperimentConfig
from kptoolkit.experiment.components import apply_with_presets
from kptoolkit.keypoints.detector import KeypointDetector


def tiny_config(*overrides: str) -> ExperimentConfig:
    """A config that trains in a fraction of a second per step (every `micro` preset)."""
    config = ExperimentConfig(name="tiny", preset="micro")
    config.data.params = {"videos": 6, "frames": 6, "workers": 1}
    config.data.num_workers = 0
    config.train.batch_size = 2
    config.train.steps = 2
    config.train.log_every = 1
    return apply_with_presets(config, list(overrides))


def tiny_kp_checkpoint(directory: Path) -> Path:
    """An official-layout FOMM file holding a tiny random detector."""
    torch.manual_seed(0)
    path = directory / "tiny-cpk.pth.tar"
    torch.save({"kp_detector": KeypointDetector(num_kp=5, **TINY_DETECTOR).state_dict()}, path)
    return path


def detector_file(path: Path, seed: int = 0, preset: str | None = None, **widths: object) -> Path:
    """An official-layout FOMM file holding a random detector of a preset's widths (default
    constructor widths when none) with `widths` over them."""
    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    params = dict(KeypointDetector.presets[preset].params) if preset else {}
    torch.save({"kp_detector": KeypointDetector(**{**params, **widths}).state_dict()}, path)
    return path


def pair_plan(
    masker: str | None,
    generator: str,
    masker_params: dict | None = None,
    generator_params: dict | None = None,
    kp_checkpoint: str | None = None,
):
    """The plan of a masker x generator pair at the `micro` widths (explicit params over them)."""
    from kptoolkit.config.schema import ModelConfig
    from kptoolkit.experiment.plan import plan_experiment

    config = tiny_config()
    config.masker = ModelConfig(masker or "", params=dict(masker_params or {}))
    config.generator = ModelConfig(generator, params=dict(generator_params or {}))
    return plan_experiment(config, kp_checkpoint)


def cli_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a `python -m kptoolkit` subprocess: its own cache, one thread."""
    return {**os.environ, "KPTOOLKIT_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}


def tiny_cli_args(tmp_path: Path) -> list[str]:
    """`--config` (the tiny config, saved) and `--kp-checkpoint` arguments of a tiny CLI run."""
    from kptoolkit.config.schema import save_config

    config = tmp_path / "tiny.yaml"
    save_config(tiny_config(), config)
    return ["--config", str(config), "--kp-checkpoint", str(tiny_kp_checkpoint(tmp_path))]
