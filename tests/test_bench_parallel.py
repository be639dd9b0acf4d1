"""Runs trained side by side (`kptoolkit bench --jobs N`): the worker count, the job scheduler,
and a micro bench whose rows equal those of a bench that trains one run at a time."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch

import kptoolkit
from kptoolkit.cli.bench import parse_jobs
from kptoolkit.cli.main import main
from kptoolkit.config.schema import load_config
from kptoolkit.errors import ConfigError
from kptoolkit.launchers import local
from kptoolkit.launchers.base import Job, LaunchSettings
from kptoolkit.launchers.local import (
    choose_workers,
    last_logged_step,
    registrations_for_workers,
    run_jobs,
)
from kptoolkit.utils.checkpoint_io import read_checkpoint

CPU, GPU = torch.device("cpu"), torch.device("cuda")


# -- what each worker runs (module level: a spawned worker imports them) -----------------------
def add(a: int, b: int) -> tuple[int, int]:
    """(a + b, this worker's pid)."""
    return a + b, os.getpid()


def worker_threads() -> int:
    return torch.get_num_threads()


def touch_after(path: str, seconds: float) -> None:
    time.sleep(seconds)
    Path(path).touch()


def fail(message: str) -> None:
    raise ValueError(message)


def registered_masker(name: str) -> str:
    return kptoolkit.MASKERS.get(name).__qualname__


class WorkerMasker:
    """A masker class registered in the test process only."""


# -- worker count ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("requested", "jobs", "device", "threads", "expected"),
    [
        (None, 5, CPU, 2, (2, 1)),  # auto on 2 cores: two runs of 1 thread
        (None, 1, CPU, 2, (1, 2)),  # one run to train keeps every thread
        (None, 3, CPU, 8, (3, 2)),  # never more workers than runs
        (None, 5, GPU, 8, (1, 8)),  # one visible GPU: one worker
        (1, 5, CPU, 8, (1, 8)),  # the default: one run at a time
        (4, 2, CPU, 8, (2, 4)),  # asked for: up to the runs to train
        (3, 9, GPU, 7, (1, 7)),  # never more workers than GPUs
    ],
)
def test_workers_and_threads(requested, jobs, device, threads, expected, monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    monkeypatch.setattr(local, "visible_gpus", lambda: 1)
    assert choose_workers(requested, jobs, device) == expected


@pytest.mark.parametrize(
    ("requested", "jobs", "gpus", "expected"),
    [
        (None, 9, 4, (4, 4)),  # auto: one worker per visible GPU
        (None, 2, 4, (2, 8)),  # no more than the runs to train
        (3, 9, 4, (3, 5)),  # asked for fewer than the GPUs
        (8, 9, 2, (2, 8)),  # asked for more: one per GPU
    ],
)
def test_one_worker_per_visible_gpu(requested, jobs, gpus, expected, monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 16)
    monkeypatch.setattr(local, "visible_gpus", lambda: gpus)
    assert choose_workers(requested, jobs, GPU) == expected


def test_each_worker_is_pinned_to_a_gpu_of_its_own(monkeypatch):
    # the local launcher hands the pool one device index per worker, and each worker takes one
    monkeypatch.setattr(local, "visible_gpus", lambda: 4)
    handed = []
    monkeypatch.setattr(local, "run_jobs", lambda *args: handed.append(args[-1]))
    launcher = local.LocalLauncher(jobs=None)
    launcher.run([], LaunchSettings(3, 2, print, False, None, GPU))
    launcher.run([], LaunchSettings(3, 2, print, False, None, CPU))
    # the first 3 indices are handed out, one per worker; a CPU run pins nothing
    assert handed == [[0, 1, 2, 3], []]
    pinned = []
    monkeypatch.setattr(torch.cuda, "set_device", pinned.append)
    queue = __import__("queue").Queue()
    for index in (0, 1, 2):
        queue.put(index)
    assert [local.take_device(queue) for _ in range(3)] == [0, 1, 2] == pinned


def test_jobs_option_is_checked():
    assert parse_jobs("auto") is None
    assert parse_jobs("3") == 3
    for bad in ("0", "-1", "two"):
        with pytest.raises(ConfigError, match="--jobs"):
            parse_jobs(bad)
    with pytest.raises(ConfigError, match="at least 1"):
        choose_workers(0, 3, CPU)


# -- the scheduler -----------------------------------------------------------------------------
@pytest.mark.slow
def test_jobs_run_in_workers_and_their_results_come_back_by_key():
    jobs = [Job("a", "A", add, lambda: (1, 2)), Job("c", "C", add, lambda: (5, 5))]
    results = run_jobs(jobs, 2, 1, print, progress=False)
    assert results["a"][0] == 3 and results["c"][0] == 10
    assert os.getpid() not in {pid for _, pid in results.values()}  # in worker processes


@pytest.mark.slow
def test_jobs_start_in_the_given_order_and_build_their_arguments_when_they_start():
    built = []

    def arguments(name, value):
        def build():
            built.append(name)
            return (value, 0)

        return build

    jobs = [Job(name, name, add, arguments(name, i)) for i, name in enumerate("xyz")]
    results = run_jobs(jobs, 1, 1, print, progress=False)
    assert built == ["x", "y", "z"]
    assert [results[name][0] for name in "xyz"] == [0, 1, 2]


@pytest.mark.slow
def test_each_worker_has_its_share_of_threads():
    jobs = [Job(str(i), str(i), worker_threads, lambda: ()) for i in range(2)]
    assert set(run_jobs(jobs, 2, 3, print, progress=False).values()) == {3}


@pytest.mark.slow
def test_a_failed_job_is_raised_and_no_job_starts_after_it():
    started = []

    def arguments():
        started.append("after")
        return (1, 1)

    jobs = [Job("bad", "bad", fail, lambda: ("broken row",)), Job("after", "after", add, arguments)]
    with pytest.raises(ValueError, match="broken row"):
        run_jobs(jobs, 1, 1, print, progress=False)
    assert started == []


@pytest.mark.slow
def test_a_failed_job_waits_for_the_running_ones_to_finish(tmp_path):
    marker = tmp_path / "slow-finished"
    jobs = [
        Job("slow", "slow", touch_after, lambda: (str(marker), 3.0)),
        Job("bad", "bad", fail, lambda: ("broken row",)),
    ]
    said: list[str] = []
    with pytest.raises(ValueError, match="broken row"):
        run_jobs(jobs, 2, 1, said.append, progress=False)
    assert marker.is_file()  # its work was kept
    assert said == ["bad failed; waiting for slow to finish their runs"]  # the user knows why


def test_two_jobs_with_one_key_are_refused():
    with pytest.raises(ValueError, match="same key"):
        run_jobs(
            [Job("a", "a", add, lambda: (1, 1)), Job("a", "b", add, lambda: (2, 2))], 2, 1, print
        )


@pytest.mark.slow
def test_components_registered_in_this_process_reach_the_workers():
    kptoolkit.MASKERS.register("worker_masker")(WorkerMasker)
    try:
        registrations = registrations_for_workers()
        assert registrations["maskers"]["worker_masker"] is WorkerMasker
        job = Job("m", "m", registered_masker, lambda: ("worker_masker",))
        assert run_jobs([job], 1, 1, print, False, registrations)["m"] == "WorkerMasker"
    finally:
        kptoolkit.MASKERS.unregister("worker_masker")


def test_a_component_that_cannot_be_pickled_keeps_one_run_at_a_time():
    class Local:  # defined in a function: a worker could not import it
        pass

    kptoolkit.MASKERS.register("local_masker")(Local)
    try:
        assert registrations_for_workers() is None
    finally:
        kptoolkit.MASKERS.unregister("local_masker")


def test_progress_reads_the_last_logged_step(tmp_path):
    assert last_logged_step(tmp_path) is None
    (tmp_path / "losses.csv").write_text("step,total\n1,0.5\n10,0.4\n")
    assert last_logged_step(tmp_path) == 10
    (tmp_path / "losses.csv").write_text("step,total\n1,0.5\n1")  # a row being written
    assert last_logged_step(tmp_path) == 1
    assert last_logged_step(None) is None


# -- a micro bench, side by side and one at a time ----------------------------------------------
def _bench(out: Path, jobs: str, threads: int, capfd, baselines: str = "fomm") -> str:
    torch.set_num_threads(threads)
    args = ["bench", "--profile", "micro", "--masker", "heatmap_sum", "--baselines", baselines]
    args += ["--set", "data.num_workers=1"]  # workers load in their own process instead
    assert main([*args, "--out", str(out), "--jobs", jobs, "--no-progress"]) == 0
    return capfd.readouterr().out


def _final(out: Path, slug: str) -> Path:
    """The final checkpoint of a bench's run."""
    run = out / "runs" / f"{slug}-seed0"
    state = json.loads((run / "bench-state.json").read_text())
    return run / "checkpoints" / state["train"]["checkpoint"]


def _assert_same_weights(first: Path, second: Path) -> None:
    a, b = read_checkpoint(first)["models"], read_checkpoint(second)["models"]
    assert a.keys() == b.keys()
    compared = 0
    for network, weights in a.items():
        assert weights.keys() == b[network].keys()
        for key, tensor in weights.items():
            assert torch.equal(tensor, b[network][key]), f"{first}: {network}.{key}"
            compared += 1
    assert compared > 10


def _rows(out: Path) -> tuple[dict[str, dict], dict]:
    payload = json.loads((out / "results.json").read_text())
    return {row["method"]: row for row in payload["rows"]}, payload


def _prior_checkpoint(cache: Path) -> Path:
    """The final checkpoint of the detector prior cached in `cache` (its second stage)."""
    (done,) = cache.glob("detector-priors/*/refine-*/done.json")
    return done.parent / json.loads(done.read_text())["checkpoint"]


@pytest.mark.slow
def test_runs_side_by_side_equal_runs_one_at_a_time(tmp_path, monkeypatch, capfd):
    threads = torch.get_num_threads()
    try:
        # the prior and heatmap_sum, one run at a time with 2 threads
        monkeypatch.setenv("KPTOOLKIT_CACHE", str(tmp_path / "cache-1"))
        alone = _bench(tmp_path / "alone", "1", 2, capfd, baselines="")
        # an empty cache: data, evaluators and prior made again; the rows in two workers of
        # 1 thread each
        monkeypatch.setenv("KPTOOLKIT_CACHE", str(tmp_path / "cache-2"))
        log = _bench(tmp_path / "two", "2", 2, capfd)
        # the same rows one at a time with 1 thread, reading that bench's cached prior
        _bench(tmp_path / "one", "1", 1, capfd)
    finally:
        torch.set_num_threads(threads)
    assert "training 2 runs at a time, 1 thread(s) each" in log
    # the prior trains first, in the bench's process with both threads: the same detector,
    # bit for bit, as one run at a time with those threads trains
    stage_one, stage_two = (
        "detector prior, stage 1/2: trained 4 steps",
        "detector prior, stage 2/2: trained 8 steps",
    )
    assert log.index(stage_one) < log.index(stage_two) < log.index("training 2 runs")
    assert stage_two in alone and "runs at a time" not in alone
    _assert_same_weights(
        _prior_checkpoint(tmp_path / "cache-1"), _prior_checkpoint(tmp_path / "cache-2")
    )
    # so do the evaluators: the same rulers (their floors to the last digit) as one run at a
    # time with those threads trains
    assert log.index("evaluator synthetic_pose: trained") < log.index("training 2 runs")
    floors = [
        {method: row for method, row in _rows(tmp_path / bench)[0].items() if "floor" in method}
        for bench in ("alone", "two")
    ]
    assert floors[0] and floors[0] == floors[1]
    # the same runs (each trained with 1 thread, from the same prior, the workers' batches
    # loaded in their own process): the same weights, to the last bit
    for slug in ("fomm_keypoints+fomm", "heatmap_sum+two_stage"):
        _assert_same_weights(_final(tmp_path / "one", slug), _final(tmp_path / "two", slug))
        for bench, loaders in (("one", 1), ("two", 0)):
            stored = load_config(tmp_path / bench / "runs" / f"{slug}-seed0" / "config.yaml")
            assert stored.data.num_workers == loaders
    # each row's test reconstructions (and controls) ran in its worker after training: the
    # reconstruct stage found them done, frame for frame those of one run at a time
    assert "heatmap_sum + two_stage [static]: 2 videos" in log.split("[bench 5/7")[0]
    assert "[bench 5/7 reconstruct] FOMM [warped]: cached (2 videos" in log
    for slug in ("fomm_keypoints+fomm", "heatmap_sum+two_stage"):
        for folder in ("reconstruction", "reconstruction-static"):
            pngs = sorted((tmp_path / "one" / "runs" / f"{slug}-seed0" / folder).rglob("*.png"))
            assert len(pngs) == 2
            for png in pngs:
                other = tmp_path / "two" / png.relative_to(tmp_path / "one")
                assert other.read_bytes() == png.read_bytes(), png
    (one, one_payload), (two, two_payload) = _rows(tmp_path / "one"), _rows(tmp_path / "two")
    assert set(one) == set(two)
    for method, row in one.items():  # scored with 1 thread and with 2: the last digits move
        for metric, value in row["metrics"].items():
            assert two[method]["metrics"][metric] == pytest.approx(value, rel=1e-4, abs=1e-7)
    assert two_payload["detector"]["steps"] == one_payload["detector"]["steps"] == 4 + 8
    assert two_payload["budget"]["runs_at_once"] == 2
    assert one_payload["budget"]["runs_at_once"] == 1
    header = (tmp_path / "two" / "results.md").read_text()
    assert "trained 2 runs at a time, 1 thread each" in header
    # a second bench reuses every run without starting a worker
    monkeypatch.setenv("KPTOOLKIT_CACHE", str(tmp_path / "cache-2"))
    again = _bench(tmp_path / "two", "2", 2, capfd)
    assert "training 2 runs at a time" not in again and again.count(": cached (") >= 3
    # and its header still says how the cached rows were trained, not how it would train them
    assert (
        "trained 2 runs at a time, 1 thread each" in (tmp_path / "two" / "results.md").read_text()
    )
    for row in _rows(tmp_path / "two")[1]["budget"]["training"].values():
        assert row == {"threads": 1, "runs_at_once": [2]}
