"""Kill `kptoolkit train` at random moments (SIGKILL: no clean-up runs), resume each time, and
check that the finished run equals an uninterrupted one: the same loss log, the same weights."""

from __future__ import annotations

import csv
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_trainer import cli_env, tiny_cli_args

from kptoolkit.checkpoint_io import read_checkpoint
from kptoolkit.engine.checkpoints import latest_checkpoint

KILLS = 10
STEPS = 120
SETTINGS = ["train.checkpoint_every=7", "train.keep_last=2", "train.log_every=1"]


def read_log(run: Path) -> list[dict[str, str]]:
    with (run / "losses.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_train_killed_at_ten_random_moments_finishes_as_if_never_killed(tmp_path):
    base = [sys.executable, "-m", "kptoolkit", "train", *tiny_cli_args(tmp_path), "--no-progress"]
    settings = ["--set", f"train.steps={STEPS}", *SETTINGS]
    env = cli_env(tmp_path)
    reference = tmp_path / "reference"
    done = subprocess.run([*base, "--out", str(reference), *settings], env=env, cwd=tmp_path)
    assert done.returncode == 0

    run = tmp_path / "killed"
    command = [*base, "--out", str(run), "--resume", *settings]
    rng = random.Random(0)
    kills = 0
    while kills < KILLS:
        process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, 6.0))  # start-up, config, a step, a checkpoint write ...
        if process.poll() is not None:
            break  # it finished before this kill: the run is complete
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills += 1
    finished = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True)
    assert finished.returncode == 0, finished.stderr.decode()[-2000:]
    assert kills >= KILLS // 2  # most kills landed while it was running

    expected, got = read_log(reference), read_log(run)
    assert [row["step"] for row in got] == [str(step) for step in range(1, STEPS + 1)]
    for a, b in zip(expected, got, strict=True):
        assert float(a["total"]) == pytest.approx(float(b["total"]), rel=1e-6, abs=1e-7)
    theirs = read_checkpoint(latest_checkpoint(reference / "checkpoints"))["models"]
    ours = read_checkpoint(latest_checkpoint(run / "checkpoints"))["models"]
    for role, state in theirs.items():
        for key, tensor in state.items():
            torch.testing.assert_close(ours[role][key], tensor, rtol=1e-5, atol=1e-6)
    assert not list(run.rglob(".*partial*"))


def scores(out: Path) -> list[tuple[str, dict, dict]]:
    """(method, metrics, intervals) of every row of a bench's results.json."""
    import json

    rows = json.loads((out / "results.json").read_text())["rows"]
    return [(row["method"], row["metrics"], row["interval"]) for row in rows]


@pytest.mark.slow
def test_a_bench_killed_at_five_random_moments_gives_the_same_table(tmp_path):
    args = ["--profile", "micro", "--masker", "heatmap_sum", "--baselines", "x2face"]
    base = [sys.executable, "-m", "kptoolkit", "bench", *args, "--no-progress"]

    def env(name: str) -> dict[str, str]:  # own caches: kills also land in data and evaluators
        return {**cli_env(tmp_path), "KPTOOLKIT_CACHE": str(tmp_path / f"cache-{name}")}

    reference = tmp_path / "reference"
    done = subprocess.run([*base, "--out", str(reference)], env=env("reference"), cwd=tmp_path)
    assert done.returncode == 0

    out = tmp_path / "killed"
    command = [*base, "--out", str(out)]
    rng = random.Random(1)
    kills = 0
    while kills < 5:
        process = subprocess.Popen(
            command, env=env("killed"), cwd=tmp_path, stdout=subprocess.DEVNULL
        )
        time.sleep(rng.uniform(1.0, 8.0))
        if process.poll() is not None:
            break
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills += 1
    finished = subprocess.run(command, env=env("killed"), cwd=tmp_path, capture_output=True)
    assert finished.returncode == 0, finished.stderr.decode()[-2000:]
    assert kills >= 3

    expected, got = scores(reference), scores(out)
    assert [row[0] for row in got] == [row[0] for row in expected]
    for (method, metrics, interval), (_, want_metrics, want_interval) in zip(
        got, expected, strict=True
    ):
        assert metrics == pytest.approx(want_metrics, rel=1e-6, abs=1e-9), method
        for key, bounds in interval.items():
            assert bounds == pytest.approx(want_interval[key], rel=1e-6, abs=1e-9), (method, key)
    assert not list(out.rglob(".*partial*"))


def test_a_checkpoint_the_disk_refuses_is_one_line_and_the_previous_one_survives(tmp_path):
    run = tmp_path / "run"
    base = [sys.executable, "-m", "kptoolkit", "train", *tiny_cli_args(tmp_path), "--no-progress"]
    base += ["--out", str(run)]
    env = cli_env(tmp_path)
    assert subprocess.run([*base, "--set", "train.steps=2"], env=env, cwd=tmp_path).returncode == 0
    previous = run / "checkpoints" / "step-00000002.pth"
    kept = previous.read_bytes()
    limit = len(kept) // 2  # the small files pass, a checkpoint cannot (as `ulimit -f` does)

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    resumed = [*base, "--resume", "--set", "train.steps=4"]
    failed = subprocess.run(resumed, env=env, cwd=tmp_path, capture_output=True, preexec_fn=limited)
    lines = failed.stderr.decode().strip().splitlines()
    assert failed.returncode == 1 and len(lines) == 1, lines
    assert "cannot write checkpoint" in lines[0] and "step-00000004.pth" in lines[0]
    assert "File too large" in lines[0]
    assert previous.read_bytes() == kept
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [previous.name]
    # with room again, the run resumes from the kept checkpoint and the log follows it
    assert subprocess.run(resumed, env=env, cwd=tmp_path).returncode == 0
    assert [row["step"] for row in read_log(run)] == ["1", "2", "3", "4"]
