"""Training throughput on the CPU: optimisation steps per second at 64 px CPU widths, batch 8.

The synthetic-64 profile (every component's cpu64 preset), a detector from a
FOMM-layout file with random weights for the keypoint maskers, 2 data-loader workers.
"""

from __future__ import annotations

import pytest
import torch

from kptoolkit.config.schema import ExperimentConfig, apply_overrides
from kptoolkit.engine.trainer import Trainer
from kptoolkit.experiment.components import detector_params
from kptoolkit.keypoints.detector import KeypointDetector

PAIRS = [("heatmap_sum", "two_stage"), ("", "fomm"), ("", "x2face")]
MEASURED_STEPS = 30  # per round


def kp_file(directory, config: ExperimentConfig):
    detector = KeypointDetector(**detector_params(config))
    path = directory / "kp.pth"
    torch.save({"kp_detector": detector.state_dict()}, path)
    return path


@pytest.mark.parametrize(
    ("masker", "generator"), PAIRS, ids=["heatmap_sum+two_stage", "fomm", "x2face"]
)
def test_training_steps_per_second(benchmark, tmp_path, smoke, masker, generator):
    steps = 2 if smoke else MEASURED_STEPS
    config = apply_overrides(
        ExperimentConfig(),
        [
            f"masker.name={masker}",
            f"generator.name={generator}",
            "train.batch_size=8",
            "train.checkpoint_every=100000",
            "train.sample_every=100000",
            "data.params.videos=40",
            # a smoke run: a smaller dataset to render
            *(["data.params.videos=10", "data.params.frames=8"] if smoke else []),
        ],
    )
    trainer = Trainer.from_config(
        config, tmp_path / "run", kp_checkpoint=str(kp_file(tmp_path, config)), progress=False
    )
    # the steps alone: not the checkpoint and sample grid each `train()` call ends with
    trainer._save_checkpoint = lambda: None  # type: ignore[method-assign]
    trainer._save_samples = lambda inputs: None  # type: ignore[method-assign]

    def more_steps():
        trainer.total_steps = trainer.step + steps

    # a round: `steps` more steps of one trainer (its data loader starts again each round);
    # the warm-up round takes the first allocations and the oneDNN primitives
    benchmark.pedantic(trainer.train, setup=more_steps, rounds=3, warmup_rounds=1)
    if benchmark.enabled:
        rate = steps / benchmark.stats.stats.median
        benchmark.extra_info["steps_per_second"] = rate
        name = f"{masker or 'natural'}+{generator}"
        print(
            f"\ntraining {name}, 64 px CPU widths, batch 8: {rate:.2f} steps/s "
            f"({rate * 8:.0f} pairs/s)"
        )
