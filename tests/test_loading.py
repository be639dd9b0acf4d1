"""`data.num_workers: auto`: loader processes only on cores the training threads leave idle."""

from __future__ import annotations

import pytest
from train_fixtures import tiny_config

import kptoolkit.runtime.loading as loading
from kptoolkit.config.schema import ExperimentConfig, apply_overrides
from kptoolkit.errors import ConfigError
from kptoolkit.experiment.plan import plan_experiment
from kptoolkit.runtime.loading import GPU_LOADER_WORKERS, resolve_loader_workers


@pytest.mark.parametrize(
    ("cpus", "threads", "workers"),
    [(2, 2, 0), (2, 1, 1), (8, 2, 2), (16, 16, 0), (4, 8, 0)],
)
def test_auto_starts_loaders_on_the_cores_the_training_threads_leave(
    monkeypatch, cpus, threads, workers
):
    monkeypatch.setattr(loading, "usable_cpus", lambda: cpus)
    assert resolve_loader_workers("auto", "cpu", threads) == workers


def test_auto_reads_the_process_thread_count_when_the_run_gives_none(monkeypatch):
    monkeypatch.setattr(loading, "usable_cpus", lambda: 4)
    monkeypatch.setattr(loading.torch, "get_num_threads", lambda: 3)
    assert resolve_loader_workers("auto", "cpu") == 1


def test_a_gpu_keeps_its_loaders_and_a_count_is_kept(monkeypatch):
    monkeypatch.setattr(loading, "usable_cpus", lambda: 2)
    assert resolve_loader_workers("auto", "cuda", 2) == GPU_LOADER_WORKERS
    assert resolve_loader_workers(3, "cpu", 2) == 3


def test_the_plan_resolves_auto_and_a_saved_count_stays(monkeypatch):
    monkeypatch.setattr(loading, "usable_cpus", lambda: 2)
    config = tiny_config("data.num_workers=auto", "train.threads=2")
    assert config.data.num_workers == "auto"
    assert plan_experiment(config, device="cpu").config.data.num_workers == 0
    assert config.data.num_workers == "auto"  # the plan works on a copy
    kept = tiny_config("data.num_workers=1", "train.threads=2")
    assert plan_experiment(kept, device="cpu").config.data.num_workers == 1


def test_auto_is_the_default_and_bad_counts_end_in_one_line():
    assert ExperimentConfig().data.num_workers == "auto"
    for bad in ("-1", "many", "true"):
        with pytest.raises(ConfigError, match="num_workers"):
            apply_overrides(ExperimentConfig(), [f"data.num_workers={bad}"])
