"""The submitit launcher (`kptoolkit bench --launcher submitit`): its parameters and one-line
errors, the sbatch file it asks for, jobs run by submitit's local executor (results, threads,
a killed job submitted again, a failed one reported, another bench's job waited for), and micro
benches: the local executor's table equals `--launcher local --jobs 1`'s, after a job killed
mid-row too, and after the bench itself was killed mid-row and run again."""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from bench_process import BenchProcess, cache_env, results_table

from kptoolkit.cli.main import main
from kptoolkit.errors import ConfigError
from kptoolkit.launchers import submitit as launcher_module
from kptoolkit.launchers import submitit_jobs
from kptoolkit.launchers.base import Job, LauncherError, LaunchSettings
from kptoolkit.launchers.submitit import SubmititLauncher, default_folder, sbatch_options
from kptoolkit.registry.registries import LAUNCHERS
from kptoolkit.utils.atomic import partial_path
from kptoolkit.utils.locks import exclusive

HERE = Path(__file__).resolve().parent
CPU = torch.device("cpu")
needs_submitit = pytest.mark.skipif(
    importlib.util.find_spec("submitit") is None, reason="pip install 'kptoolkit[slurm]'"
)


# -- what the jobs run (module level: the job process imports this module) ---------------------
def job_report(value: int) -> tuple[int, int, dict[str, str]]:
    """(value, torch threads, the job's thread variables)."""
    print(f"[job] got {value}", flush=True)
    found = {k: v for k, v in os.environ.items() if "THREAD" in k}
    return value, torch.get_num_threads(), found


def die_once(marker: str) -> str:
    """Killed (SIGKILL) the first time, as an out-of-memory or preempted job is."""
    if not Path(marker).exists():
        Path(marker).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return "second try"


def always_die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def fail(message: str) -> None:
    raise ValueError(message)


def pid_then_sleep(path: str, seconds: float) -> None:
    Path(path).write_text(str(os.getpid()))
    time.sleep(seconds)


def touch_after(path: str, seconds: float) -> str:
    time.sleep(seconds)
    Path(path).touch()
    return path


@pytest.fixture
def jobs_import_this_module(monkeypatch):
    """The local executor's jobs are new Python processes: let them import this module."""
    paths = [str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))


def _job(key: str, work, *arguments, log_dir: Path | None = None) -> Job:
    return Job(key, key.upper(), work, lambda: arguments, log_dir=log_dir)


# -- parameters and one-line errors --------------------------------------------------------------
def _bench_args(out: Path, *sets: str) -> list[str]:
    args = ["bench", "--profile", "micro", "--launcher", "submitit", "--out", str(out)]
    for item in sets:
        args += ["--launcher-set", item]
    return args


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("kptoolkit: error: ")
    return lines[0]


def test_without_submitit_the_bench_says_which_extra_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "submitit", None)  # `import submitit` fails
    assert main(_bench_args(tmp_path / "out", "cluster=local")) == 1
    line = _one_error_line(capsys)
    assert "'submitit' package" in line and "kptoolkit[slurm]" in line
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_an_unknown_launcher_parameter_is_one_line(tmp_path, capsys):
    assert main(_bench_args(tmp_path / "out", "cluster=local", "partitoin=gpu")) == 1
    line = _one_error_line(capsys)
    assert "has no parameter 'partitoin' (did you mean 'partition'?)" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"cluster": "debug"}, "use --launcher local"),
        ({"cluster": "pbs"}, "cluster=slurm or cluster=local"),
        ({}, "no srun on the PATH"),  # auto: SLURM, not found here
        ({"cluster": "slurm"}, "--launcher-set cluster=local runs"),
        ({"cluster": "local", "max_retries": -1}, "max_retries takes a whole number >= 0"),
        ({"cluster": "local", "timeout_min": 1.5}, "timeout_min takes a whole number >= 1"),
        ({"cluster": "local", "mem_gb": "lots"}, "mem_gb takes a positive number"),
        ({"cluster": "local", "slurm_additional_parameters": "a100"}, "key=value items"),
    ],
)
@needs_submitit
def test_bad_parameters_are_refused(params, says, monkeypatch):
    monkeypatch.setattr(launcher_module.shutil, "which", lambda name: None)
    with pytest.raises(ConfigError) as raised:
        SubmititLauncher(**params)
    assert says in str(raised.value) and "\n" not in str(raised.value)


def test_sbatch_options_take_a_mapping_or_key_value_items():
    assert sbatch_options(None) == sbatch_options("") == {}
    assert sbatch_options("constraint=a100, qos=high") == {"constraint": "a100", "qos": "high"}
    assert sbatch_options({"exclusive": True}) == {"exclusive": True}


@needs_submitit
def test_the_slurm_job_asks_for_the_parameters(tmp_path, monkeypatch):
    import submitit
    import submitit.slurm.slurm as slurm

    # a machine with SLURM's commands (none is called: the file is only written out)
    monkeypatch.setattr(slurm.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(launcher_module.shutil, "which", lambda name: f"/usr/bin/{name}")
    launcher = LAUNCHERS.create(
        "submitit",
        partition="gpu",
        mem_gb=16,
        timeout_min=600,
        slurm_additional_parameters="constraint=a100,qos=high",
        folder=str(tmp_path / "logs"),
    )
    assert launcher.describe() == "submitit (SLURM partition gpu)"
    assert launcher.plan(5, CPU) == (5, torch.get_num_threads())  # every job queued at once
    executor = launcher.executor(submitit, launcher.folder, 3, torch.device("cuda"))
    text = executor._executor._make_submission_file_text("python -m job", "uid")
    for flag in (
        "--partition=gpu",
        "--cpus-per-task=3",  # the bench's threads per job
        "--gpus-per-node=1",  # the bench runs on CUDA
        "--mem=16GB",
        "--time=600",
        "--constraint=a100",
        "--qos=high",
        f"--output={tmp_path / 'logs'}/%j/%j_0_log.out",
    ):
        assert f"#SBATCH {flag}\n" in text
    on_cpu = launcher.executor(submitit, launcher.folder, 2, CPU)
    assert "--gpus-per-node" not in on_cpu._executor._make_submission_file_text("x", "uid")


@needs_submitit
def test_the_local_executor_runs_as_many_jobs_as_the_cores_hold(monkeypatch):
    monkeypatch.setattr(launcher_module, "usable_cpus", lambda: 8)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    launcher = SubmititLauncher(cluster="local")
    assert launcher.describe() == "submitit (local executor)"
    assert launcher.plan(10, CPU) == (4, 2)
    assert launcher.plan(3, CPU) == (3, 2)
    assert SubmititLauncher(cluster="local", max_jobs=1).plan(10, CPU) == (1, 2)


def test_logs_go_beside_the_run_folders_or_into_the_cache(tmp_path):
    run = tmp_path / "bench" / "runs" / "row-seed0"
    assert default_folder([_job("a", fail), _job("b", fail, log_dir=run)]) == (
        tmp_path / "bench" / "submitit"
    )
    from kptoolkit.utils.paths import cache_dir

    assert default_folder([_job("prior", fail)]) == cache_dir().resolve() / "submitit"


# -- jobs run by the local executor ------------------------------------------------------------
@pytest.mark.slow
@needs_submitit
def test_jobs_run_with_the_bench_threads_and_return_by_key(
    tmp_path, jobs_import_this_module, capsys
):
    launcher = SubmititLauncher(cluster="local", folder=str(tmp_path / "logs"))
    built = []

    def arguments(value: int):
        def build():
            built.append(value)
            return (value,)

        return build

    jobs = [Job(k, k.upper(), job_report, arguments(v)) for k, v in (("a", 1), ("b", 2))]
    lines: list[str] = []
    results = launcher.run(jobs, LaunchSettings(say=lines.append, progress=False))
    assert built == [1, 2]  # built when submitted, in order
    # the count the bench passed (1, not this machine's default), no thread variable added
    before = {k: v for k, v in os.environ.items() if "THREAD" in k}
    assert results == {"a": (1, 1, before), "b": (2, 1, before)}
    assert [line.split(":")[0] for line in lines] == ["A", "B"]
    assert all("finished in" in line for line in lines)
    assert "[job] got 1" in capsys.readouterr().out  # the jobs' lines are relayed
    assert sorted(p.name for p in (tmp_path / "logs" / "jobs").iterdir()) == [
        "a.json",
        "a.lock",
        "b.json",
        "b.lock",
    ]


@pytest.mark.slow
@needs_submitit
def test_a_killed_job_is_submitted_again_then_reported_with_its_logs(
    tmp_path, jobs_import_this_module
):
    lines: list[str] = []
    launcher = SubmititLauncher(cluster="local", folder=str(tmp_path / "logs"))
    marker = str(tmp_path / "killed-once")
    assert launcher.run([_job("row", die_once, marker)], LaunchSettings(say=lines.append)) == {
        "row": "second try"
    }
    assert "ROW: job" in lines[0] and "ended without a result" in lines[0]
    assert "submitting it again (1 of 1)" in lines[0]
    assert "finished in" in lines[1]
    with pytest.raises(LauncherError) as raised:
        launcher.run([_job("doomed", always_die)], LaunchSettings(say=lines.append))
    message = str(raised.value)
    assert "DOOMED: job" in message and "ended without a result 2 times" in message
    assert "_log.out" in message and "_log.err" in message


@pytest.mark.slow
@needs_submitit
def test_a_failed_job_is_raised_once_the_others_finish(tmp_path, jobs_import_this_module):
    lines: list[str] = []
    launcher = SubmititLauncher(cluster="local", folder=str(tmp_path / "logs"), max_jobs=2)
    done = tmp_path / "done"
    jobs = [_job("bad", fail, "boom"), _job("slow", touch_after, str(done), 3.0)]
    with pytest.raises(LauncherError) as raised:
        launcher.run(jobs, LaunchSettings(2, 1, lines.append))
    assert done.exists()  # the other job finished first
    message = str(raised.value)
    assert message.startswith("BAD: job ") and "failed: ValueError: boom" in message
    assert "_log.err" in message and "submitting it again" not in "\n".join(lines)


@pytest.mark.slow
@needs_submitit
def test_a_job_that_another_bench_runs_is_waited_for(tmp_path, jobs_import_this_module):
    folder = tmp_path / "logs"
    lock = folder / "jobs" / "row.lock"
    lock.parent.mkdir(parents=True)
    (folder / "jobs" / "row.json").write_text('{"job_id": "123", "stdout": "123.out"}')
    released = threading.Event()

    def other_bench() -> None:
        with exclusive(lock):
            released.wait(60)

    holder = threading.Thread(target=other_bench)
    holder.start()
    time.sleep(0.2)
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        released.set()  # the other bench's job ends once this one waits

    try:
        launcher = SubmititLauncher(cluster="local", folder=str(folder))
        assert launcher.run(
            [_job("row", touch_after, str(tmp_path / "x"), 0.0)], LaunchSettings(say=say)
        )
    finally:
        released.set()
        holder.join()
    assert "ROW: job 123 of another bench (its log: 123.out) still runs it" in lines[0]
    assert "finished in" in lines[1]


@pytest.mark.slow
@needs_submitit
def test_an_interrupted_run_cancels_its_jobs(tmp_path, jobs_import_this_module, monkeypatch):
    monkeypatch.setattr(submitit_jobs, "PROGRESS_EVERY_S", 0.0)  # `say` at every poll
    started = tmp_path / "pid"

    def say(line: str) -> None:
        if started.exists() and started.read_text():
            raise KeyboardInterrupt  # Ctrl-C while the job runs

    launcher = SubmititLauncher(cluster="local", folder=str(tmp_path / "logs"))
    with pytest.raises(KeyboardInterrupt):
        launcher.run([_job("long", pid_then_sleep, str(started), 300.0)], LaunchSettings(say=say))
    job = int(started.read_text())
    deadline = time.monotonic() + 30
    while _alive(job) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(job)


# -- micro benches -----------------------------------------------------------------------------
STEPS = 12  # a row long enough to be killed part-way (a checkpoint every 2 steps)
LABEL = "heatmap_sum + two_stage"
ARGS = [
    "bench",
    "--profile",
    "micro",
    "--masker",
    "heatmap_sum",
    "--baselines",
    "",
    "--no-progress",
    "--set",
    "data.num_workers=1",
    f"train.steps={STEPS}",
    "train.checkpoint_every=2",
]
ROW = "heatmap_sum+two_stage-seed0"
SUBMITIT = ["--launcher", "submitit", "--launcher-set", "cluster=local"]


def _bench(out: Path, env: dict[str, str], launcher: list[str]) -> BenchProcess:
    return BenchProcess([*ARGS, *launcher], out, env)


def _run_bench(out: Path, env: dict[str, str], launcher: list[str]) -> tuple[str, float]:
    bench = _bench(out, env, launcher)
    try:
        assert bench.wait() == 0, bench.output()
    finally:
        bench.stop_all()
    return bench.output(), bench.seconds


@pytest.fixture(scope="module")
def local_table(tmp_path_factory) -> list[dict[str, str]]:
    """The table of `--launcher local --jobs 1`, from an empty cache."""
    root = tmp_path_factory.mktemp("local")
    _run_bench(root / "bench", cache_env(root / "cache"), ["--launcher", "local", "--jobs", "1"])
    return results_table(root / "bench")


@pytest.fixture(scope="module")
def submitit_bench(tmp_path_factory) -> tuple[Path, str, dict[str, str]]:
    """A local-executor bench from an empty cache: (its folder, its output, its env, whose
    cache the kill tests reuse)."""
    root = tmp_path_factory.mktemp("submitit")
    env = cache_env(root / "cache")
    output, _ = _run_bench(root / "bench", env, SUBMITIT)
    return root / "bench", output, env


@pytest.mark.slow
@needs_submitit
def test_a_local_executor_bench_equals_a_local_one(submitit_bench, local_table):
    out, output, _ = submitit_bench
    # the evaluators, the detector prior and the row each ran as a job, with the bench's threads
    for label in ("evaluator synthetic_pose", "evaluator synthetic_id", "detector prior"):
        assert f"{label}: a job on the submitit (local executor)" in output
    assert "training 1 runs at a time" in output and "(submitit (local executor))" in output
    assert f"{LABEL}: trained {STEPS} steps" in output  # relayed from the job's log
    assert results_table(out) == local_table
    assert list((out / "submitit" / "jobs").glob("*.lock"))


def _midway(out: Path) -> bool:
    """The row has a checkpoint before its last step and no finished training."""
    run = out / "runs" / ROW
    state = run / "bench-state.json"
    if state.is_file() and '"train"' in state.read_text():
        return False
    return any(int(p.stem.split("-")[1]) < STEPS for p in run.glob("checkpoints/step-*.pth"))


def _job_process(out: Path) -> int | None:
    """The pid of the row's job process (submitit's `_submit` for `<out>/submitit`)."""
    wanted = f"submitit.core._submit\0{out / 'submitit'}"
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_text()
            except OSError:
                continue
            if wanted in command:
                return int(entry.name)
    return None


def _wait_for(condition, bench: BenchProcess, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert bench.process.poll() is None, bench.output()
        assert time.monotonic() < deadline, bench.output()
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@pytest.mark.slow
@needs_submitit
@linux_only
def test_a_job_killed_mid_row_is_submitted_again_to_the_same_table(
    tmp_path, submitit_bench, local_table
):
    out = tmp_path / "bench"
    bench = _bench(out, submitit_bench[2], SUBMITIT)
    try:
        _wait_for(lambda: _midway(out) and _job_process(out) is not None, bench)
        os.kill(_job_process(out), signal.SIGKILL)
        assert bench.wait() == 0, bench.output()
    finally:
        bench.stop_all()
    output = bench.output()
    assert f"{LABEL}: job" in output and "ended without a result" in output
    assert "submitting it again (1 of 1)" in output
    assert f"{LABEL}: training resuming at step" in output
    assert results_table(out) == local_table


@pytest.mark.slow
@needs_submitit
@linux_only
def test_a_bench_killed_mid_row_reruns_after_its_job_to_the_same_table(
    tmp_path, submitit_bench, local_table
):
    out, env = tmp_path / "bench", submitit_bench[2]
    first = _bench(out, env, SUBMITIT)
    rerun = None
    job = None
    try:
        _wait_for(lambda: _midway(out) and _job_process(out) is not None, first)
        # hold the job still, a write under way in its run folder (locked: it trains), while
        # the bench is killed and run again: the rerun must wait for the job, its write kept
        job = _job_process(out)
        os.kill(job, signal.SIGSTOP)
        live = partial_path(out / "runs" / ROW / "checkpoints" / "step-999999.pth")
        live.write_bytes(b"half a checkpoint")
        os.kill(first.process.pid, signal.SIGKILL)
        assert first.wait() != 0
        assert _alive(job)  # a killed bench's jobs go on
        rerun = _bench(out, env, SUBMITIT)
        _wait_for(lambda: "still runs it" in rerun.output(), rerun)
        assert live.exists()  # not taken for what a killed writer left
        live.unlink()
        os.kill(job, signal.SIGCONT)
        assert rerun.wait() == 0, rerun.output()
        deadline = time.monotonic() + 30
        while _alive(job) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(job)  # it finished the row, then ended
    finally:
        if job is not None and _alive(job):
            os.kill(job, signal.SIGCONT)
        for bench in (first, rerun):
            if bench is not None:
                bench.stop_all()
    output = rerun.output()
    assert f"{LABEL}: job" in output and "of another bench" in output
    # the first bench's job finished the row; the rerun's job found it trained and
    # reconstructed: nothing trained twice
    assert f"{LABEL}: cached ({STEPS} steps" in output
    assert f"{LABEL}: training" not in output
    assert results_table(out) == local_table
