"""A `--jobs 2` bench killed at any moment (SIGKILL, or SIGINT to the bench alone) leaves no
process behind, and rerunning it gives the table of a bench that was never interrupted."""

from __future__ import annotations

import os
import random
import signal
import sys
import time
from pathlib import Path

import pytest
from bench_process import BenchProcess, cache_env, results_table, survivors

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
]

STEPS = 24
# three rows, two at a time, each with checkpoints on the way, so that a kill can land while a
# row trains beside another and its rerun resume it
ARGS = [
    "bench",
    "--profile",
    "micro",
    "--masker",
    "heatmap_sum",
    "--jobs",
    "2",
    "--no-progress",
    "--pose-evaluator",  # L1, PSNR and SSIM tell a changed row; evaluators only add time
    "none",
    "--id-evaluator",
    "none",
    "--set",
    "data.num_workers=1",
    f"train.steps={STEPS}",
    "train.checkpoint_every=4",
]
KILLS = 5


def _bench(out: Path, env: dict[str, str]) -> BenchProcess:
    return BenchProcess(ARGS, out, env)


def _last_row_midway(out: Path) -> bool:
    """Two rows have finished training and the third is part-way (a checkpoint before its
    last step): killed now, the rerun has that one row left to train, alone."""
    runs = [run for run in out.glob("runs/*") if run.is_dir()]
    done = [run for run in runs if '"train"' in _text(run / "bench-state.json")]
    midway = [
        run
        for run in runs
        if run not in done
        and any(int(p.stem.split("-")[1]) < STEPS for p in run.glob("checkpoints/step-*.pth"))
    ]
    return len(done) == 2 and len(midway) == 1


def _text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    return cache_env(tmp_path_factory.mktemp("kill-cache"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, env) -> tuple[list[dict[str, str]], float]:
    """The table of a bench never interrupted, and a lower bound on how long one takes once the
    cache is warm: its time without its first stages (the puppets it rendered and the detector
    prior it trained, which a warm bench reads from the cache)."""
    out = tmp_path_factory.mktemp("uninterrupted") / "bench"
    bench = _bench(out, env)
    assert bench.wait() == 0, bench.output()
    assert "training 2 runs at a time" in bench.output()
    cached = bench.first("[bench 4/7") - bench.first("[bench 1/7")
    return results_table(out), bench.seconds - cached


def _kill_and_rerun(out: Path, env: dict[str, str], when, how: signal.Signals) -> str:
    """Start a bench, send `how` when `when(bench)` holds, check that nothing of it survives,
    then rerun it to the end; returns the killed bench's output."""
    bench = _bench(out, env)
    while not when(bench) and bench.process.poll() is None:
        time.sleep(0.05)
    assert bench.process.poll() is None, "the bench ended before the moment to stop it"
    os.kill(bench.process.pid, how)
    assert bench.wait(120) != 0
    assert survivors(bench.process.pid) == [], bench.output()
    rerun = _bench(out, env)
    assert rerun.wait() == 0, rerun.output()
    assert survivors(rerun.process.pid) == []
    return bench.output()


def test_a_bench_killed_mid_parallel_training_resumes_to_the_same_table(
    tmp_path, env, uninterrupted
):
    table, _ = uninterrupted
    out = tmp_path / "bench"
    killed = _kill_and_rerun(out, env, lambda bench: _last_row_midway(out), signal.SIGKILL)
    assert "training 2 runs at a time" in killed
    assert results_table(out) == table
    # the row resumed after the kill was trained and reconstructed with its first thread count
    resumed = (out / "results.md").read_text()
    assert "threads not recorded" not in resumed


@pytest.mark.parametrize("moment", range(KILLS))
def test_a_bench_killed_at_a_random_moment_leaves_nothing_and_reruns_to_the_same_table(
    moment, tmp_path, env, uninterrupted
):
    table, seconds = uninterrupted
    # within the first 80% of a warm bench: one that draws a moment near its end may finish
    # before it comes (the run-to-run spread of a micro bench is several percent)
    delay = random.Random(moment).uniform(0.0, 0.8 * seconds)
    out = tmp_path / "bench"

    def later(bench: BenchProcess) -> bool:
        return time.monotonic() - bench.started >= delay

    _kill_and_rerun(out, env, later, signal.SIGKILL)
    assert results_table(out) == table, f"killed after {delay:.1f} s"


def test_sigint_to_the_bench_alone_stops_its_workers(tmp_path, env, uninterrupted):
    table, _ = uninterrupted
    out = tmp_path / "bench"
    killed = _kill_and_rerun(out, env, lambda bench: _last_row_midway(out), signal.SIGINT)
    assert "kptoolkit: interrupted" in killed
    assert results_table(out) == table
