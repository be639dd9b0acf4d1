"""The submitit launcher: every bench job (each row x seed, the detector prior, each evaluator
trained on the dataset) as a SLURM job through submitit, or, with `cluster=local`, as a process
of this machine started by submitit's local executor (for machines without SLURM, and tests).

    kptoolkit bench --launcher submitit --launcher-set partition=gpu --launcher-set timeout_min=600

Install it with `pip install 'kptoolkit[slurm]'`. The bench's stage cache on the file system is
the contract (`kptoolkit.launchers.base`): a job writes its stages into its run folder, so the
bench folder (`--out`) and the cache (`KPTOOLKIT_CACHE`) must lie on a file system that the
cluster's nodes share with the machine the bench runs on, with working `flock` locks (NFS,
Lustre mounted with `flock`), as do the job logs below.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

from kptoolkit.errors import ConfigError
from kptoolkit.launchers.base import Job, Launcher, LauncherError, require
from kptoolkit.launchers.local import PROGRESS_EVERY_S, last_logged_step
from kptoolkit.utils.locks import exclusive
from kptoolkit.utils.paths import cache_dir

CLUSTERS = ("slurm", "local")
POLL_S = 1.0  # how often the jobs' states and logs are read
LOGS_NAME = "submitit"  # the logs' folder: beside the run folders' folder, or in the cache
DAY_MIN = 24 * 60


class SubmititLauncher(Launcher):
    """Each job a submitit job: on SLURM (one job per row and seed, each with its own CPUs or
    GPU, all queued at once), or with `cluster=local` a process of this machine.

    Parameters (`--launcher-set key=value`):

    - `cluster`: `slurm`, `local`, or None (the default): SLURM, refused in one line where
      `srun` is not on the PATH (no silent fallback to this machine's processes).
      `debug` (submitit's in-process executor) is refused: it runs the jobs inside the bench's
      process and stops in pdb on an error; `--launcher local` does that part.
    - `partition`, `mem_gb`, `timeout_min` (default 1440: a day; a job that reaches it is
      requeued from its last checkpoint by submitit, up to 3 times), `gpus_per_job` (default:
      1 when the bench runs on CUDA, else 0), `cpus_per_job` (default: the bench's torch
      threads per job, the `threads` the bench passes).
    - `slurm_additional_parameters`: more sbatch options, a mapping
      (`slurm_additional_parameters="{constraint: a100, qos: high}"`) or `key=value` items
      separated by commas (`slurm_additional_parameters=constraint=a100,qos=high`).
    - `max_jobs`: jobs queued or running at once (default: every job on SLURM; on this machine
      as many as its CPUs hold at the bench's threads each, so that jobs do not share cores).
    - `max_retries` (default 1): a job that ends without a result (killed, out of memory,
      preempted for good, its node lost) is submitted again this many times, resuming from
      its run's last checkpoint; then it is reported as a `LauncherError` naming its logs.
      A job that raised is reported at once, with the error's last line: rerunning it would
      raise again.
    - `folder`: where submitit keeps each job's pickles and logs (`<folder>/<job id>/`).
      Default: `<out>/submitit/` for a bench's rows (the folder above the run folders' folder,
      from the first job's `log_dir`), and `<cache>/submitit/` for the jobs that every row
      waits for (the detector prior and the evaluators, which write into the cache).

    Threads: each job sets torch's thread count to the bench's (`threads`) before its work,
    so that the detector prior and the evaluators train with the bench process's count, as
    the local launcher's bench does; a row then sets its own recorded count (`train.threads`).
    submitit adds no thread variable to a job's environment (only `SUBMITIT_*` and
    `CUDA_VISIBLE_DEVICES`), and the explicit count wins over `OMP_NUM_THREADS` and SLURM's
    CPU binding alike.

    Stopping: Ctrl-C to the bench cancels its jobs (`scancel`, or SIGINT to a local job's
    controller; their runs resume from their last checkpoints next time). A bench that ends
    without unwinding (SIGKILL, SIGTERM, which the bench does not catch, a lost login session)
    cannot: its jobs go on, on SLURM by design and with the local executor as well (submitit
    starts local jobs to outlive the session that submitted them; they are not tied to the
    bench with `die_with_parent`, so that both executors behave alike and no work is lost;
    `<folder>/jobs/<key>.json` names each job, its id being a local job's controller pid).
    Each job holds a lock of its own (`<folder>/jobs/<key>.lock`) from start to end, training
    and reconstructions included; a rerun that finds a job's lock held waits for that job to
    finish, then submits its own, which finds the stages done (or resumes where a killed one
    stopped): no stage trains twice, and no job meets a run folder locked by another.
    """

    runs_here = False

    def __init__(
        self,
        cluster: str | None = None,
        partition: str | None = None,
        gpus_per_job: int | None = None,
        cpus_per_job: int | None = None,
        timeout_min: int = DAY_MIN,
        mem_gb: float | None = None,
        slurm_additional_parameters: dict[str, Any] | str | None = None,
        folder: str | None = None,
        max_retries: int = 1,
        max_jobs: int | None = None,
    ) -> None:
        require("submitit", "slurm")
        if cluster is not None and cluster not in CLUSTERS:
            hint = " (debug runs jobs in the bench's process: use --launcher local)"
            raise ConfigError(
                f"--launcher-set cluster={cluster}: the submitit launcher takes "
                f"cluster=slurm or cluster=local{hint if cluster == 'debug' else ''}"
            )
        if cluster in (None, "slurm") and shutil.which("srun") is None:  # as submitit checks
            raise ConfigError(
                "the submitit launcher finds no SLURM on this machine (no srun on the PATH): "
                "--launcher-set cluster=local runs its jobs as processes of this machine"
            )
        self.cluster = cluster or "slurm"
        self.partition = None if partition is None else str(partition)
        self.gpus_per_job = _count("gpus_per_job", gpus_per_job, 0)
        self.cpus_per_job = _count("cpus_per_job", cpus_per_job, 1)
        timeout = _count("timeout_min", timeout_min, 1)
        assert timeout is not None
        self.timeout_min = timeout
        if mem_gb is not None and (not isinstance(mem_gb, int | float) or mem_gb <= 0):
            raise ConfigError(f"--launcher-set mem_gb takes a positive number, got {mem_gb!r}")
        self.mem_gb = mem_gb
        self.sbatch = sbatch_options(slurm_additional_parameters)
        self.folder = None if folder is None else Path(folder).expanduser().resolve()
        retries = _count("max_retries", max_retries, 0)
        assert retries is not None
        self.max_retries = retries
        self.max_jobs = _count("max_jobs", max_jobs, 1)

    # -- the interface ---------------------------------------------------------------------
    def plan(self, jobs: int, device: torch.device) -> tuple[int, int]:
        threads = torch.get_num_threads()
        if self.max_jobs is not None:
            at_once = self.max_jobs
        elif self.cluster == "local":  # this machine's cores, not shared between jobs
            at_once = 1 if device.type == "cuda" else max(1, usable_cpus() // threads)
        else:
            at_once = jobs
        return max(1, min(at_once, jobs)), threads

    def describe(self) -> str:
        if self.cluster == "local":
            return "submitit (local executor)"
        where = f"partition {self.partition}" if self.partition else "default partition"
        return f"submitit (SLURM {where})"

    def run(
        self,
        jobs: Sequence[Job],
        workers: int,
        threads: int,
        say: Callable[[str], None],
        progress: bool = True,
        registrations: dict[str, dict[str, Any]] | None = None,
        device: torch.device | None = None,
    ) -> dict[str, Any]:
        """Submit the jobs (at most `workers` queued or running at once, in the given order,
        each job's arguments built when it is submitted), relay their output lines, say when
        each finishes and return the results by key. A job that ended without a result is
        submitted again (`max_retries`); after a failure no job is submitted, the others
        finish, then a `LauncherError` names every failed job and its logs. (`registrations`
        travel inside each job's work: `WithRegistrations`.)"""
        submitit = require("submitit", "slurm")
        if len({job.key for job in jobs}) != len(jobs):
            raise ValueError("two jobs have the same key")
        if not jobs:
            return {}
        folder = self.folder or default_folder(jobs)
        executor = self.executor(submitit, folder, threads, device)
        run = _Run(self, executor, folder, threads, say, progress)
        try:
            return run.all(jobs, max(1, workers))
        except BaseException:
            run.cancel()  # interrupted (Ctrl-C, SIGTERM): the jobs stop too
            raise
        finally:
            with contextlib.suppress(OSError):  # submitit's staging folder, empty by now
                (folder / "%j").rmdir()

    # -- submitit --------------------------------------------------------------------------
    def executor(
        self, submitit: Any, folder: Path, threads: int, device: torch.device | None
    ) -> Any:
        """The submitit executor of these parameters, writing into `<folder>/<job id>/`."""
        executor = submitit.AutoExecutor(folder=folder / "%j", cluster=self.cluster)
        gpus = self.gpus_per_job
        if gpus is None:
            gpus = 1 if device is not None and device.type == "cuda" else 0
        parameters: dict[str, Any] = {
            "timeout_min": self.timeout_min,
            "nodes": 1,
            "tasks_per_node": 1,
            "cpus_per_task": self.cpus_per_job or max(1, threads),
        }
        if gpus:
            parameters["gpus_per_node"] = gpus
        if self.mem_gb is not None:
            parameters["mem_gb"] = self.mem_gb
        if self.partition is not None:
            parameters["slurm_partition"] = self.partition
        if self.sbatch:
            parameters["slurm_additional_parameters"] = dict(self.sbatch)
        executor.update_parameters(**parameters)
        return executor


@attrs.frozen
class JobTask:
    """What a submitit job runs: `work` with the bench's torch threads, holding the job's lock
    (`lock`, a file) meanwhile, so that a later bench waits for it. Picklable; submitit calls
    `checkpoint` on a timeout or preemption, to requeue the same call (the run resumes from
    its last checkpoint)."""

    work: Callable[..., Any]
    threads: int
    lock: str

    def __call__(self, *arguments: Any) -> Any:
        torch.set_num_threads(self.threads)  # the bench process's count, whatever the node's
        with exclusive(Path(self.lock)):  # another bench's job of this key finishes first
            return self.work(*arguments)

    def checkpoint(self, *arguments: Any) -> Any:
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *arguments)


@attrs.define
class _Submitted:
    """One job of a `run`: waiting for another bench's job of its key, or submitted."""

    job: Job
    tries: int = 0  # submissions so far
    handle: Any = None  # the submitit job
    started: float = attrs.field(factory=time.perf_counter)
    read: int = 0  # how much of its stdout was relayed
    waiting_for: str | None = None  # another bench's job of this key, still running


class _Run:
    """The state of one `SubmititLauncher.run`."""

    def __init__(
        self,
        launcher: SubmititLauncher,
        executor: Any,
        folder: Path,
        threads: int,
        say: Callable[[str], None],
        progress: bool,
    ) -> None:
        self.launcher = launcher
        self.executor = executor
        self.folder = folder
        self.threads = threads
        self.say = say
        self.progress = progress
        self.active: list[_Submitted] = []
        self.results: dict[str, Any] = {}
        self.failures: list[str] = []

    def all(self, jobs: Sequence[Job], workers: int) -> dict[str, Any]:
        waiting = list(jobs)
        reported = time.perf_counter()
        while waiting or self.active:
            while not self.failures and waiting and len(self.active) < workers:
                self.start(_Submitted(waiting.pop(0)))
            if not self.active:
                break  # a failure stopped the rest
            time.sleep(POLL_S)
            for entry in list(self.active):
                self.poll(entry)
            if self.progress and time.perf_counter() - reported >= PROGRESS_EVERY_S:
                reported = time.perf_counter()
                if self.active:
                    self.say(self.progress_line())
        if self.failures:
            raise LauncherError("\n".join(self.failures))
        return self.results

    # -- one job ---------------------------------------------------------------------------
    def start(self, entry: _Submitted) -> None:
        """Submit `entry`'s job, unless another bench's job of its key still runs."""
        if entry not in self.active:
            self.active.append(entry)
        holder = self.other_job(entry.job)
        if holder is not None:
            if entry.waiting_for is None:
                self.say(
                    f"{entry.job.label}: {holder} still runs it (a bench stopped before it "
                    "finished); waiting for it, then its finished stages are reused"
                )
            entry.waiting_for = holder
            return
        entry.waiting_for = None
        try:
            arguments = entry.job.arguments()
            self.executor.update_parameters(name=f"kptoolkit-{entry.job.key}")
            task = JobTask(entry.job.work, self.threads, str(self.lock(entry.job)))
            entry.handle = self.executor.submit(task, *arguments)
        except Exception as error:  # its config refused, sbatch refused: nothing submitted
            self.active.remove(entry)
            self.failures.append(f"{entry.job.label}: not submitted: {_one_line(error)}")
            return
        if self.launcher.cluster == "local":
            # its result is written before its process ends: no shared file system's delay to
            # wait out (15 s) before a job that died is known to have left none
            entry.handle._results_timeout_s = 1
        entry.tries += 1
        entry.started, entry.read = time.perf_counter(), 0
        self.record(entry)

    def poll(self, entry: _Submitted) -> None:
        if entry.handle is None:  # waiting for another bench's job
            self.start(entry)
            return
        self.relay(entry)
        if not entry.handle.done():
            return
        self.relay(entry)
        job, handle = entry.job, entry.handle
        error = handle.exception()
        minutes = (time.perf_counter() - entry.started) / 60
        if error is None:
            self.results[job.key] = handle.result()
            self.active.remove(entry)
            self.say(f"{job.label}: job {handle.job_id} finished in {minutes:.1f} min")
            return
        logs = f"its log: {handle.paths.stdout}, {handle.paths.stderr}"
        if _died(error) and entry.tries <= self.launcher.max_retries:
            self.say(
                f"{job.label}: job {handle.job_id} ended without a result ({handle.state}); "
                f"submitting it again ({entry.tries} of {self.launcher.max_retries}), to resume "
                f"from its last checkpoint; {logs}"
            )
            entry.handle = None
            self.start(entry)
            return
        self.active.remove(entry)
        if _died(error):
            tries = "once" if entry.tries == 1 else f"{entry.tries} times"
            reason = f"ended without a result {tries} (last: {handle.state})"
        else:
            reason = f"failed: {_last_error_line(str(error))}"
        self.failures.append(f"{job.label}: job {handle.job_id} {reason}; {logs}")
        if self.active:
            names = ", ".join(e.job.label for e in self.active)
            self.say(f"{job.label} failed; waiting for {names} to finish")

    def cancel(self, grace_s: float = 15.0) -> None:
        """Cancel every submitted job that has not finished; on this machine, wait (up to
        `grace_s`) until they have ended, as the local launcher's interrupted workers do."""
        handles = [entry.handle for entry in self.active if entry.handle is not None]
        for handle in handles:
            with contextlib.suppress(Exception):  # finished meanwhile, or unreachable
                handle.cancel(check=False)
        if self.launcher.cluster != "local":
            return  # SLURM ends them
        deadline = time.monotonic() + grace_s
        with contextlib.suppress(Exception):
            while not all(handle.done() for handle in handles) and time.monotonic() < deadline:
                time.sleep(0.1)

    # -- job files -------------------------------------------------------------------------
    def lock(self, job: Job) -> Path:
        return self.folder / "jobs" / f"{_file_name(job.key)}.lock"

    def record(self, entry: _Submitted) -> None:
        """Write which job runs `entry`'s key (read by a later bench that waits for it)."""
        handle = entry.handle
        path = self.lock(entry.job).with_suffix(".json")
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "job_id": str(handle.job_id),
            "cluster": self.launcher.cluster,
            "label": entry.job.label,
            "stdout": str(handle.paths.stdout),
            "stderr": str(handle.paths.stderr),
        }
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        partial.write_text(json.dumps(record, indent=1), encoding="utf-8")
        os.replace(partial, path)

    def other_job(self, job: Job) -> str | None:
        """'job N (its log: ...)' when a job of `job`'s key, submitted by another bench, holds
        its lock now; else None."""
        lock = self.lock(job)
        if not lock_held(lock):
            return None
        try:
            record = json.loads(lock.with_suffix(".json").read_text(encoding="utf-8"))
            return f"job {record['job_id']} of another bench (its log: {record['stdout']})"
        except (OSError, ValueError, KeyError):
            return "a job of another bench"

    def relay(self, entry: _Submitted) -> None:
        """Print the job's new complete output lines (its progress lines), without submitit's
        own log lines."""
        path = entry.handle.paths.stdout
        try:
            with open(path, "rb") as handle:
                handle.seek(entry.read)
                text = handle.read()
        except OSError:
            return  # not started yet
        end = text.rfind(b"\n") + 1
        entry.read += end
        for line in text[:end].decode("utf-8", "replace").splitlines():
            if line.strip() and not line.startswith("submitit "):
                print(line, flush=True)

    def progress_line(self) -> str:
        parts = []
        now = time.perf_counter()
        for entry in self.active:
            if entry.handle is None:
                parts.append(f"{entry.job.label} waiting for {entry.waiting_for}")
                continue
            step = last_logged_step(entry.job.log_dir)
            state = entry.handle.state
            where = f"step {step}" if step is not None else state.lower()
            minutes = (now - entry.started) / 60
            parts.append(
                f"{entry.job.label} at {where} (job {entry.handle.job_id}, {minutes:.1f} min)"
            )
        return "jobs: " + "; ".join(parts)


# -- helpers -------------------------------------------------------------------------------
def default_folder(jobs: Sequence[Job]) -> Path:
    """Where the jobs' logs go without a `folder` parameter: `<out>/submitit` for a bench's
    rows (their run folders are `<out>/runs/<row>`), `<cache>/submitit` for jobs without a run
    folder (the detector prior and the evaluators, which write into the cache)."""
    for job in jobs:
        if job.log_dir is not None:
            return Path(job.log_dir).resolve().parent.parent / LOGS_NAME
    return cache_dir().resolve() / LOGS_NAME


def sbatch_options(value: dict[str, Any] | str | None) -> dict[str, Any]:
    """`slurm_additional_parameters` as a mapping: given as one, or as 'key=value,key=value'."""
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return {str(key): item for key, item in value.items()}
    if isinstance(value, str):
        options: dict[str, Any] = {}
        for item in value.split(","):
            key, sep, text = item.partition("=")
            if not sep or not key.strip():
                break
            options[key.strip()] = text.strip()
        else:
            return options
    raise ConfigError(
        "--launcher-set slurm_additional_parameters takes sbatch options as key=value items "
        f"separated by commas, or a mapping such as '{{constraint: a100}}', got {value!r}"
    )


def usable_cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def lock_held(path: Path) -> bool:
    """Whether a process holds the `flock` of file `path` (taken and released at once when
    free; a job that asks meanwhile waits for it: `JobTask`)."""
    if not path.is_file():
        return False
    try:
        import fcntl
    except ImportError:  # no POSIX locks: nothing to wait for
        return False
    handle = os.open(path, os.O_RDWR)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False
    finally:
        os.close(handle)


def _count(name: str, value: Any, least: int) -> int | None:
    """A whole-number parameter, at least `least` (None stays None)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(f"--launcher-set {name} takes a whole number >= {least}, got {value!r}")
    return value


def _died(error: BaseException) -> bool:
    """Whether a job's error says it ended without a result (killed, preempted, timed out too
    often, its node lost), not that its work raised."""
    from submitit.core.utils import FailedJobError, UncompletedJobError

    return isinstance(error, UncompletedJobError) and not isinstance(error, FailedJobError)


def _last_error_line(trace: str) -> str:
    """The exception line of a job's traceback ('BenchError: ...')."""
    lines = [line.strip() for line in trace.splitlines() if line.strip()]
    found = [line for line in lines if re.match(r"^[\w.]+(Error|Exception|Interrupt)\b", line)]
    return found[-1] if found else (lines[-1] if lines else "unknown error")


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _file_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]", "_", key)
