"""A rerun beside the jobs of a killed bench: on a cluster a job outlives the bench that
launched it, so the rerun must neither write into a run folder that job still writes nor delete
its partial files, and every job is told a device that exists where it runs."""

from __future__ import annotations

import json

import pytest
import torch

from kptoolkit.bench.launching import job_device
from kptoolkit.bench.runner import Bench, BenchOptions
from kptoolkit.bench.stages.reconstruction import controls, reconstruct_run
from kptoolkit.bench.stages.stage_cache import STATE_NAME
from kptoolkit.launchers.base import Launcher
from kptoolkit.utils.locks import FolderBusyError, folder_lock


def test_a_job_with_gpus_of_its_own_is_told_cuda_not_the_bench_machines_index():
    second = torch.device("cuda:1")
    assert job_device(second, runs_here=False, runs_at_once=1) == "cuda"  # SLURM job, Ray task
    assert job_device(second, runs_here=True, runs_at_once=2) == "cuda"  # a pinned worker
    assert job_device(second, runs_here=True, runs_at_once=1) == "cuda:1"  # the bench's own
    assert job_device(torch.device("cpu"), runs_here=False, runs_at_once=3) == "cpu"


class _Recording(Launcher):
    """A launcher that runs elsewhere and only records which jobs it was given."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    def run(self, jobs, settings):
        self.keys = [job.key for job in jobs]
        return {}


def test_a_rerun_launches_every_row_whose_reconstructions_are_not_all_recorded(
    tmp_path, monkeypatch
):
    options = BenchOptions(["heatmap_sum"], ["two_stage"], profile="micro", out=str(tmp_path))
    bench = Bench(options)
    bench.launcher = _Recording()
    bench._parallelism = (1, 1)
    monkeypatch.setattr("kptoolkit.bench.row_runs.run_is_trained", lambda run_dir: True)
    trained_here: list[str] = []
    monkeypatch.setattr(bench, "train", lambda entry, seed, plan: trained_here.append(entry.slug))
    seed = bench.seeds[0]
    done, partly, untouched = bench.entries
    for entry, recorded in ((done, [None, *controls(done.generator)]), (partly, [None])):
        folder = bench.run_dir(entry, seed)
        folder.mkdir(parents=True)
        state = {"train": {}} | {
            f"reconstruction-{c}" if c else "reconstruction": {} for c in recorded
        }
        (folder / STATE_NAME).write_text(json.dumps(state))
    bench.train_all()
    # trained, but a control not reconstructed (the killed bench's job may still be at it): the
    # job goes where the jobs run and finds the run's lock, never this process
    assert bench.launcher.keys == [f"{partly.slug}-seed{seed}", f"{untouched.slug}-seed{seed}"]
    assert trained_here == [done.slug]


def test_a_reconstruction_stops_before_writing_in_a_run_folder_another_job_holds(tmp_path):
    run_dir = tmp_path / "runs" / "row-seed0"
    checkpoint = run_dir / "checkpoints" / "final.pth"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"not read: the lock comes first")
    before = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*"))
    with folder_lock(run_dir, "a kptoolkit run"), pytest.raises(FolderBusyError, match="in use"):
        reconstruct_run(
            run_dir,
            checkpoint,
            lambda: [],
            None,
            None,
            precision="fp32",
            device=torch.device("cpu"),
            progress=False,
            label="row",
            say=print,
        )
    after = sorted(
        p.relative_to(run_dir) for p in run_dir.rglob("*") if p.name != ".kptoolkit.lock"
    )
    assert after == before
