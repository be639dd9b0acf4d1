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
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from kptoolkit.errors import ConfigError
from kptoolkit.launchers.base import Job, Launcher, LaunchSettings, require
from kptoolkit.launchers.submitit_jobs import SubmittedRun
from kptoolkit.runtime.hardware import usable_cpus
from kptoolkit.utils.paths import cache_dir

CLUSTERS = ("slurm", "local")
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

    def run(self, jobs: Sequence[Job], settings: LaunchSettings) -> dict[str, Any]:
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
        threads = settings.threads
        executor = self.executor(submitit, folder, threads, settings.device)
        run = SubmittedRun(self, executor, folder, threads, settings.say, settings.progress)
        try:
            return run.all(jobs, max(1, settings.workers))
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


def _count(name: str, value: Any, least: int) -> int | None:
    """A whole-number parameter, at least `least` (None stays None)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(f"--launcher-set {name} takes a whole number >= {least}, got {value!r}")
    return value
