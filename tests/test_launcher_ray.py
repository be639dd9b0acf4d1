"""The Ray launcher (`kptoolkit bench --launcher ray`): its parameters and one-line errors, a
task's setting, log and retries, the watcher that ends what a killed bench's local cluster
leaves, and micro benches whose tables equal a bench of the local launcher's, uninterrupted,
with a task's worker killed mid-row, or with the bench itself killed mid-row and rerun."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from bench_process import BenchProcess, cache_env, results_table, survivors

from kptoolkit.cli.main import main
from kptoolkit.errors import ConfigError, KptoolkitError
from kptoolkit.launchers import ray as ray_launcher
from kptoolkit.launchers.base import Job, LauncherError, LaunchSettings, require

# ray imported by the launcher, after its settings (not here)
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="no ray extra")
linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

MICRO = ["bench", "--profile", "micro", "--masker", "heatmap_sum", "--baselines", ""]
MICRO += ["--no-progress", "--set", "data.num_workers=1"]
STEPS = 24
# one row with checkpoints on the way (killed mid-row, it resumes), no evaluators (L1, PSNR and
# SSIM tell a changed row), the detector prior a Ray task of its own
KILLABLE = [*MICRO, f"train.steps={STEPS}", "train.checkpoint_every=4"]
KILLABLE += ["--pose-evaluator", "none", "--id-evaluator", "none", "--launcher", "ray"]
ROW = "heatmap_sum+two_stage-seed0"


@pytest.fixture(autouse=True)
def ray_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment the launcher sets for Ray, undone after each test."""
    for name, value in {**ray_launcher.RAY_ENVIRONMENT, **ray_launcher.LOOPBACK}.items():
        monkeypatch.setenv(name, value)


# -- parameters and one-line errors (no cluster started) --------------------------------------
def test_missing_ray_is_one_line_naming_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails
    out = tmp_path / "bench"
    assert main([*MICRO, "--launcher", "ray", "--out", str(out)]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "needs the 'ray' package" in line and "kptoolkit[ray]" in line
    assert not out.exists()  # refused before anything was written


@needs_ray
@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("num_cpu=2", "has no parameter 'num_cpu' (did you mean 'num_cpus'?)"),
        ("max_retries=-1", "max_retries takes a whole number >= 0, got -1"),
        ("num_gpus=lots", "num_gpus takes a number >= 0, got 'lots'"),
        ("num_cpus=0", "num_cpus takes a number > 0, got 0"),
        ("num_cpus=4096", "num_cpus=4096: ray (local cluster"),
    ],
)
def test_a_wrong_launcher_setting_is_one_line(setting, expected, tmp_path, capsys):
    out = tmp_path / "bench"
    args = [*MICRO, "--launcher", "ray", "--launcher-set", setting, "--out", str(out)]
    assert main(args) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("kptoolkit: error: ") and expected in line, line
    assert not out.exists()


def test_jobs_belong_to_the_local_launcher(tmp_path, capsys):
    assert main([*MICRO, "--launcher", "ray", "--jobs", "2", "--out", str(tmp_path)]) == 1
    assert "--launcher-set" in capsys.readouterr().err


@needs_ray
def test_plan_resources_and_description(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    monkeypatch.setattr(ray_launcher, "visible_gpus", lambda: 2)
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    local = ray_launcher.RayLauncher()
    local.cluster_cpus = 4
    assert local.describe() == "ray (local cluster, 4 CPUs)"
    assert local.plan(3, cpu) == (2, 2)  # 2 tasks of 2 CPUs fit in 4
    assert local.plan(3, gpu) == (2, 2) and local.resources(2, gpu) == (2, 1)
    assert local.plan(1, cpu) == (1, 2)
    assert local.resources(8, cpu) == (4, 0)  # no more than the cluster has
    one = ray_launcher.RayLauncher(address="local", num_cpus=1, num_gpus=0.5, max_retries=0)
    one.cluster_cpus = 4
    assert one.plan(9, cpu) == (4, 2) and one.resources(2, gpu) == (1, 0.5)
    running = ray_launcher.RayLauncher(address="auto")
    assert running.describe() == "ray (cluster at auto)"
    assert running.plan(5, cpu) == (5, 2) and running.runs_here is False
    with pytest.raises(ConfigError, match="address"):
        ray_launcher.RayLauncher(address=" ")


# -- a task: its setting and log, the relay of its lines (no cluster started) ----------------
def threads_and_folder(word: str) -> tuple[int, str, str | None]:
    print(f"working on {word}")
    return torch.get_num_threads(), os.getcwd(), os.environ.get("http_proxy")


def fail() -> None:
    raise KptoolkitError("no such thing")


def test_a_task_runs_with_the_bench_setting_and_writes_its_log(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # what a local cluster's worker sees
    (tmp_path / "bench").mkdir()
    log = tmp_path / "task.out"
    before = torch.get_num_threads()
    setting = (1, {"http_proxy": None}, str(tmp_path / "bench"))
    result = ray_launcher.run_task(setting, str(log), threads_and_folder, "it")
    assert result == (1, str(tmp_path / "bench"), None)  # the bench's threads, folder, proxy
    assert torch.get_num_threads() == before
    with pytest.raises(KptoolkitError):
        ray_launcher.run_task(setting, str(log), fail)
    lines = log.read_text().splitlines()
    assert lines[0].startswith(ray_launcher.STARTED) and lines[1] == "working on it"
    assert lines[-1] == "kptoolkit.errors.KptoolkitError: no such thing"  # its traceback


def test_a_task_log_is_printed_and_a_second_try_said(tmp_path, capsys):
    log = tmp_path / "row.out"
    said: list[str] = []
    run = ray_launcher._Run(None, None, {"max_retries": 1}, (), tmp_path, said.append, False)
    entry = ray_launcher._Submitted(Job("row", "the row", print, tuple), None, log)
    log.write_text(f"{ray_launcher.STARTED} in process 1\nstep 1\nhalf a li")
    run.relay(entry)
    assert capsys.readouterr().out == "step 1\n" and not said
    with log.open("a") as handle:
        handle.write(f"ne\n{ray_launcher.STARTED} in process 2\nresumed\n")
    run.relay(entry)
    assert capsys.readouterr().out == "half a line\nresumed\n"
    assert said == [
        "the row: its Ray worker ended before the job did; Ray runs it again (try 2 of 2), "
        "resuming from its last checkpoint"
    ]


# -- the watcher --------------------------------------------------------------------------------
@pytest.mark.slow
@linux
def test_the_watcher_kills_the_processes_below_its_roots_when_the_bench_dies(tmp_path):
    """A stand-in bench starts a process tree (a 'head process' and its child) and the watcher,
    then dies without cleaning up: the watcher kills the tree."""
    sleeper = (
        f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', {SLEEP!r}]); {SLEEP}"
    )
    bench = (
        "import subprocess, sys, time, os\n"
        f"head = subprocess.Popen([sys.executable, '-c', {sleeper!r}])\n"
        f"subprocess.Popen([sys.executable, '-c', {ray_launcher.WATCHER!r}, str(head.pid)],"
        " stdin=subprocess.PIPE)\n"
        "time.sleep(3)\n"  # the watcher notes the head and its child
        "os._exit(0)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", bench], start_new_session=True)
    assert process.wait(60) == 0
    assert survivors(process.pid) == []


SLEEP = "import time; time.sleep(120)"


# -- a few jobs on a local cluster -------------------------------------------------------------
@pytest.mark.slow
@needs_ray
def test_jobs_run_as_tasks_and_a_failure_names_its_job_after_the_others_end(isolated_cache, capsys):
    # what a Ray worker can import (not this module): library functions
    launcher = ray_launcher.RayLauncher()
    missing = ("kptoolkit_no_such_package", "nothing")
    jobs = [
        Job("fails", "the failing job", require, lambda: missing),
        Job("prints", "the printing job", print, lambda: ("working on the job",)),
    ]
    said: list[str] = []
    with pytest.raises(LauncherError) as raised:
        launcher.run(jobs, LaunchSettings(2, 1, said.append, False, None, torch.device("cpu")))
    message = str(raised.value)
    assert message.startswith("the failing job: failed: LauncherError: this launcher needs")
    assert message.endswith(f"its log: {isolated_cache.resolve() / 'ray' / 'fails.out'}")
    assert "the printing job: Ray task finished" in "\n".join(said)
    assert "working on the job" in capsys.readouterr().out  # its log, printed here
    jobs = [
        Job("threads", "threads", torch.get_num_threads, tuple),
        Job("folder", "folder", os.getcwd, tuple),
        Job("proxy", "proxy", os.getenv, lambda: ("http_proxy",)),
    ]
    one_cpu = ray_launcher.RayLauncher(num_cpus=1)
    results = one_cpu.run(jobs, LaunchSettings(3, 3, said.append, False, None, torch.device("cpu")))
    # the bench's threads (not Ray's OMP_NUM_THREADS, the task's 1 CPU), folder and proxy
    assert results == {"threads": 3, "folder": os.getcwd(), "proxy": os.getenv("http_proxy")}


# -- micro benches -----------------------------------------------------------------------------
def _midway(out: Path, env: dict[str, str], timeout: float = 600) -> BenchProcess:
    """A bench of `KILLABLE` whose row has a checkpoint before its last step."""
    bench = BenchProcess(KILLABLE, out, env)
    deadline = time.monotonic() + timeout
    checkpoints = out / "runs" / ROW / "checkpoints"
    while bench.process.poll() is None and time.monotonic() < deadline:
        if any(int(p.stem.split("-")[1]) < STEPS for p in checkpoints.glob("step-*")):
            return bench
        time.sleep(0.05)
    raise AssertionError("the row was not caught mid-way:\n" + bench.output())


@pytest.mark.slow
@needs_ray
@linux
def test_a_ray_bench_from_an_empty_cache_equals_a_local_one(tmp_path):
    """Data, evaluators, detector prior and row: Ray tasks (the evaluators and the prior with
    the bench's threads), the same numbers as the local launcher's bench in one process."""
    ray_args = [*MICRO, "--launcher", "ray"]
    ray = BenchProcess(ray_args, tmp_path / "ray", cache_env(tmp_path / "cache-ray"))
    assert ray.wait() == 0, ray.output()
    assert survivors(ray.process.pid) == [], ray.output()  # its local cluster stopped
    local_args = [*MICRO, "--launcher", "local", "--jobs", "1"]
    local = BenchProcess(local_args, tmp_path / "local", cache_env(tmp_path / "cache-local"))
    assert local.wait() == 0, local.output()
    log = ray.output()
    for job in ("evaluator synthetic_pose", "evaluator synthetic_id", "detector prior"):
        assert f"{job}: Ray task finished" in log
    assert "heatmap_sum + two_stage: Ray task finished" in log
    assert "detector prior, stage 2/2: trained 8 steps" in log  # the tasks' lines, printed
    assert "training 1 runs at a time, 2 thread(s) each (ray (local cluster" in log
    table = results_table(tmp_path / "ray")
    assert len(table) > 3 and table == results_table(tmp_path / "local")
    print(f"ray {ray.seconds:.0f} s, local --jobs 1 {local.seconds:.0f} s")


@pytest.fixture(scope="module")
def kill_cache(tmp_path_factory) -> dict[str, str]:
    return cache_env(tmp_path_factory.mktemp("ray-kill-cache"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, kill_cache) -> list[dict[str, str]]:
    """The table of a Ray bench never interrupted (it fills the cache: data, prior)."""
    out = tmp_path_factory.mktemp("uninterrupted") / "bench"
    bench = BenchProcess(KILLABLE, out, kill_cache)
    assert bench.wait() == 0, bench.output()
    return results_table(out)


@pytest.mark.slow
@needs_ray
@linux
def test_a_task_whose_worker_is_killed_mid_row_is_retried_to_the_same_table(
    tmp_path, kill_cache, uninterrupted
):
    out = tmp_path / "bench"
    bench = _midway(out, kill_cache)
    started = (out / "ray" / f"{ROW}.out").read_text().splitlines()[0]
    worker = int(started.split("in process ")[1].split()[0])
    os.kill(worker, signal.SIGKILL)
    assert bench.wait() == 0, bench.output()
    log = bench.output()
    assert "Ray runs it again (try 2 of 2), resuming from its last checkpoint" in log
    assert "heatmap_sum + two_stage: training resuming at step" in log
    assert results_table(out) == uninterrupted
    assert survivors(bench.process.pid) == []


@pytest.mark.slow
@needs_ray
@linux
def test_a_bench_killed_mid_row_leaves_no_ray_process_and_reruns_to_the_same_table(
    tmp_path, kill_cache, uninterrupted
):
    out = tmp_path / "bench"
    bench = _midway(out, kill_cache)
    os.kill(bench.process.pid, signal.SIGKILL)
    assert bench.wait(120) != 0
    assert survivors(bench.process.pid) == [], bench.output()
    rerun = BenchProcess(KILLABLE, out, kill_cache)
    assert rerun.wait() == 0, rerun.output()
    assert survivors(rerun.process.pid) == []
    assert "heatmap_sum + two_stage: training resuming at step" in rerun.output()
    assert results_table(out) == uninterrupted
