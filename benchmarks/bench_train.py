"""Training throughput on the CPU: optimisation steps per second at 64 px CPU widths, batch 8.

The synthetic-64 profile (every component's cpu64 preset), a detector from a
FOMM-layout file with random weights for the keypoint maskers, 2 data-loader workers.
"""

from __future__ import annotations

import time

import pytest
import torch

from kptoolkit.components import detector_params
from kptoolkit.config import ExperimentConfig, apply_overrides
from kptoolkit.engine.trainer import Trainer
from kptoolkit.keypoints.detector import KeypointDetector

PAIRS = [("heatmap_sum", "two_stage"), ("", "fomm"), ("", "x2face")]
MEASURED_STEPS = 30


def kp_file(directory, config: ExperimentConfig):
    detector = KeypointDetector(**detector_params(config))
    path = directory / "kp.pth"
    torch.save({"kp_detector": detector.state_dict()}, path)
    return path


@pytest.mark.parametrize(
    ("masker", "generator"), PAIRS, ids=["heatmap_sum+two_stage", "fomm", "x2face"]
)
def test_training_steps_per_second(benchmark, tmp_path, masker, generator):
    config = apply_overrides(
        ExperimentConfig(),
        [
            f"masker.name={masker}",
            f"generator.name={generator}",
            "train.batch_size=8",
            f"train.steps={MEASURED_STEPS + 5}",
            "train.checkpoint_every=100000",
            "train.sample_every=100000",
            "data.params.videos=40",
        ],
    )
    trainer = Trainer(
        config, tmp_path / "run", kp_checkpoint=str(kp_file(tmp_path, config)), progress=False
    )
    trainer.total_steps = 5
    trainer.train()  # warm-up: data-loader start, first allocations
    trainer.total_steps = 5 + MEASURED_STEPS

    def measure() -> float:
        start = time.perf_counter()
        trainer.train()
        return MEASURED_STEPS / (time.perf_counter() - start)

    rates = []
    benchmark.pedantic(lambda: rates.append(measure()), rounds=1, iterations=1)
    name = f"{masker or 'natural'}+{generator}"
    benchmark.extra_info["steps_per_second"] = rates[0]
    print(
        f"\ntraining {name}, 64 px CPU widths, batch 8: {rates[0]:.2f} steps/s "
        f"({rates[0] * 8:.0f} pairs/s)"
    )
