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
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from train_fixtures import cli_env, tiny_cli_args

from kptoolkit.engine.checkpoints import latest_checkpoint
from kptoolkit.utils.checkpoint_io import read_checkpoint

KILLS = 10
STEPS = 120
SETTINGS = ["train.checkpoint_every=7", "train.keep_last=2", "train.log_every=1"]


def logged_steps(run: Path) -> int:
    """How many rows the run's loss log holds now (0 before it exists)."""
    try:
        return max(0, len((run / "losses.csv").read_text().splitlines()) - 1)
    except OSError:
        return 0


def wait_for(condition: Callable[[], bool], process: subprocess.Popen, limit: float = 300) -> None:
    """Poll until `condition` holds; fail if the process ends or `limit` seconds pass first."""
    deadline = time.monotonic() + limit
    while not condition():
        assert process.poll() is None, "the process ended before the moment of its kill"
        assert time.monotonic() < deadline, "the moment of the kill never came"
        time.sleep(0.005)


def stage_tag(line: str) -> str:
    """'[bench 4/7 train]' of a bench progress line."""
    return line.split("]")[0] + "]"


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
    # kill moments by progress, not by the clock (a fast machine finishes a run before a timed
    # kill): two during start-up, the rest once the log reaches a random step, a random instant
    # later (inside a step, a log write or a checkpoint write)
    rng = random.Random(0)
    targets = [0, 0, *sorted(rng.sample(range(3, STEPS - 3), KILLS - 2))]
    for target in targets:
        process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL)
        if target == 0:
            time.sleep(rng.uniform(0.1, 1.5))
        else:
            wait_for(lambda target=target: logged_steps(run) >= target, process)
            time.sleep(rng.uniform(0.0, 0.05))
        assert process.poll() is None, "the run ended before its kill"
        process.send_signal(signal.SIGKILL)
        process.wait()
    finished = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True)
    assert finished.returncode == 0, finished.stderr.decode()[-2000:]

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
    done = subprocess.run(
        [*base, "--out", str(reference)],
        env=env("reference"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]

    out = tmp_path / "killed"
    command = [*base, "--out", str(out)]
    # kill moments by progress, not by the clock: at a random progress line of the reference
    # bench (a resumed bench prints each stage too, cached or not: at the same line of that
    # stage, or where the stage ends), then a random instant more
    tags = [stage_tag(line) for line in done.stdout.splitlines() if line.startswith("[bench ")]
    tags = [tag for tag in tags if not tag.endswith(" results]")]
    order = {tag: rank for rank, tag in enumerate(dict.fromkeys(tags))}
    rng = random.Random(1)
    for index in sorted(rng.sample(range(len(tags)), 5)):
        tag, ordinal = tags[index], tags[: index + 1].count(tags[index])
        process = subprocess.Popen(
            command,
            env={**env("killed"), "PYTHONUNBUFFERED": "1"},
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        seen = 0
        while seen < ordinal:
            line = process.stdout.readline()
            assert line, "the bench ended before the moment of its kill"
            if line.startswith("[bench "):
                if stage_tag(line) == tag:
                    seen += 1
                elif order.get(stage_tag(line), len(order)) > order[tag]:
                    break  # this run's stage was shorter (cached): kill at its end
        time.sleep(rng.uniform(0.0, 0.5))
        assert process.poll() is None, "the bench ended before its kill"
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stdout.close()
    finished = subprocess.run(command, env=env("killed"), cwd=tmp_path, capture_output=True)
    assert finished.returncode == 0, finished.stderr.decode()[-2000:]

    expected, got = scores(reference), scores(out)
    assert [row[0] for row in got] == [row[0] for row in expected]
    for (method, metrics, interval), (_, want_metrics, want_interval) in zip(
        got, expected, strict=True
    ):
        assert metrics == pytest.approx(want_metrics, rel=1e-6, abs=1e-9), method
        for key, bounds in interval.items():
            assert bounds == pytest.approx(want_interval[key], rel=1e-6, abs=1e-9), (method, key)
    assert not list(out.rglob(".*partial*"))


@pytest.mark.slow
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
