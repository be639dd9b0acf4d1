"""Tiny saved runs for the reconstruction and animation tests (the `runs` fixture of conftest.py
writes them), and a spy on the task a masker is asked to infer for."""

from __future__ import annotations

from pathlib import Path

import kptoolkit
from kptoolkit.config.schema import ExperimentConfig, ModelConfig
from kptoolkit.experiment.build import build_models
from kptoolkit.experiment.plan import plan_experiment

SIZE, FRAMES, BATCH = 64, 6, 4  # frame size, frames per puppet video, evaluation batch


def write_run(run_dir: Path, data_root: Path, kp_file: Path, masker: str) -> Path:
    """A kptoolkit run checkpoint of tiny random networks, at <run>/checkpoints/step-*.pth."""
    config = ExperimentConfig(name="tiny", preset="micro")
    config.data.dataset, config.data.root = "fomm_frames", str(data_root)
    config.masker = ModelConfig(masker)
    config.eval.batch_size = BATCH
    models = build_models(plan_experiment(config, str(kp_file)))
    return kptoolkit.save_run(run_dir, models, config, step=2)


def record_inference_tasks(masker) -> list[str]:
    """The `task` of every `driving_for_inference` call the masker gets from now on."""
    tasks: list[str] = []
    driving_for_inference = masker.driving_for_inference

    def spy(source, source_structure, driving_structure, task="animation"):
        tasks.append(task)
        return driving_for_inference(source, source_structure, driving_structure, task=task)

    masker.driving_for_inference = spy
    return tasks
