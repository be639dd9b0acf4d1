"""The local launcher: a bench's trainings side by side in worker processes of this machine
(`--jobs N`), each with its share of the CPU threads, or one worker per visible GPU, each
pinned to its device; one job alone runs in the bench's own process.

Why several on a CPU: the quick profile's 64 px networks use a second thread poorly. On 2 cores
a training step with 2 threads takes 0.63x (two_stage) and 0.71x (FOMM) of its time with 1,
while two runs with 1 thread each, trained at the same time, keep nearly their 1-thread speed
(`benchmarks/scripts/bench_side_by_side.py`).

How: spawned worker processes run the same functions as a sequential bench, in the same
folders, with the same locks, checkpoints and resume. A job that fails stops new ones from
starting; the ones running finish (their work is kept) and the first failure is raised. Workers
end with the bench's process (`kptoolkit.utils.processes`), and an interrupted bench stops them.
"""

from __future__ import annotations

import csv
import multiprocessing
import os
import pickle
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import torch

from kptoolkit.errors import ConfigError
from kptoolkit.launchers.base import Job, Launcher, LaunchSettings
from kptoolkit.registry.registries import in_process_registrations, restore_registrations
from kptoolkit.utils.processes import child_processes, die_with_parent, stop_processes

PROGRESS_EVERY_S = 60.0  # a progress line per running job this often


def visible_gpus() -> int:
    """How many CUDA devices this process sees (0 without CUDA)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def choose_workers(requested: int | None, jobs: int, device: torch.device) -> tuple[int, int]:
    """(worker processes, torch threads per worker) for `jobs` trainings.

    `requested` None (auto): on a CPU one worker per thread, on CUDA one per visible GPU; never
    more workers than jobs, on CUDA never more than GPUs (one per device), at least one thread
    each.
    """
    if requested is not None and requested < 1:
        raise ConfigError(f"--jobs must be at least 1, got {requested}")
    threads = torch.get_num_threads()
    gpus = max(1, visible_gpus()) if device.type == "cuda" else None
    if requested is None:
        requested = threads if gpus is None else gpus
    workers = max(1, min(requested, jobs, gpus or requested))
    return workers, max(1, threads // workers)


def pins_devices(workers: int, device: torch.device) -> bool:
    """Whether each worker is pinned to a GPU of its own (several workers on CUDA)."""
    return device.type == "cuda" and workers > 1


def take_device(devices: Any) -> int:
    """Pin this worker to the next GPU index from the `devices` queue; returns it."""
    index = int(devices.get())
    torch.cuda.set_device(index)
    return index


def _start_worker(
    threads: int, registrations: dict[str, dict[str, Any]], parent: int, devices: Any = None
) -> None:
    die_with_parent(parent)  # a killed bench leaves no worker training on
    torch.set_num_threads(threads)
    restore_registrations(registrations)
    if devices is not None:
        take_device(devices)


def registrations_for_workers() -> dict[str, dict[str, Any]] | None:
    """This process's in-process components, if a worker can receive them (None when one of
    them cannot be pickled, e.g. a class defined inside a function)."""
    registrations = in_process_registrations()
    try:
        pickle.dumps(registrations)
    except (pickle.PicklingError, AttributeError, TypeError):
        return None
    return registrations


def last_logged_step(run_dir: Path | None) -> int | None:
    """The last step in a run folder's `losses.csv`; None when there is none yet."""
    path = None if run_dir is None else run_dir / "losses.csv"
    if path is None or not path.is_file():
        return None
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        return int(rows[-1]["step"]) if rows else None
    except (OSError, ValueError, KeyError, csv.Error):
        return None  # being rewritten, or not started: the next report tells


def run_jobs(
    jobs: Sequence[Job],
    workers: int,
    threads: int,
    say: Callable[[str], None],
    progress: bool = True,
    registrations: dict[str, dict[str, Any]] | None = None,
    gpus: Sequence[int] = (),
) -> dict[str, Any]:
    """Run `jobs` in `workers` processes of `threads` threads, in the given order, each as soon
    as a worker is free; returns their results by key. After a failure no job starts; the
    running ones finish and the first failure is raised.
    `registrations` (`registrations_for_workers`) are registered in each worker first; with
    `gpus`, each worker is pinned to one of those CUDA device indices (one per worker)."""
    if len({job.key for job in jobs}) != len(jobs):
        raise ValueError("two jobs have the same key")
    results: dict[str, Any] = {}
    waiting = list(jobs)
    running: dict[Future[Any], tuple[Job, float]] = {}
    failures: list[tuple[Job, BaseException]] = []
    context = multiprocessing.get_context("spawn")  # no fork of a process with torch threads
    devices = None
    if gpus:
        devices = context.Queue()
        for index in gpus[:workers]:
            devices.put(index)
    before = child_processes()
    pool = ProcessPoolExecutor(
        workers,
        mp_context=context,
        initializer=_start_worker,
        initargs=(threads, registrations or {}, os.getpid(), devices),
    )
    try:
        while waiting or running:
            while not failures and waiting and len(running) < workers:
                job = waiting.pop(0)
                future = pool.submit(job.work, *job.arguments())
                running[future] = (job, time.perf_counter())
            if not running:
                break  # a failure stopped the rest
            finished, _ = wait(running, timeout=PROGRESS_EVERY_S, return_when=FIRST_COMPLETED)
            if not finished:
                if progress:
                    say(_progress_line(running.values()))
                continue
            for future in finished:
                job, _ = running.pop(future)
                try:
                    results[job.key] = future.result()
                except Exception as error:  # reported once the running jobs are done
                    failures.append((job, error))
                    if running:
                        names = ", ".join(j.label for j, _ in running.values())
                        say(f"{job.label} failed; waiting for {names} to finish their runs")
    except BaseException:
        # interrupted (Ctrl-C, SIGTERM turned into an exception): the workers stop too, their
        # runs resume from their last checkpoints next time
        pool.shutdown(wait=False, cancel_futures=True)
        stop_processes(child_processes() - before)
        raise
    pool.shutdown(wait=True)
    if failures:
        raise failures[0][1]
    return results


def _progress_line(running: Any) -> str:
    parts = []
    now = time.perf_counter()
    for job, started in running:
        step = last_logged_step(job.log_dir)
        where = f"step {step}" if step is not None else "starting"
        parts.append(f"{job.label} at {where} ({(now - started) / 60:.1f} min)")
    return "training: " + "; ".join(parts)


class LocalLauncher(Launcher):
    """This machine: `jobs` trainings at once in worker processes (None: one per CPU thread,
    or one per visible GPU), each with its share of the threads or a GPU of its own."""

    runs_here = True

    def __init__(self, jobs: int | None = 1) -> None:
        if jobs is not None and jobs < 1:
            raise ConfigError(f"--jobs must be at least 1, got {jobs}")
        self.jobs = jobs

    def plan(self, jobs: int, device: torch.device) -> tuple[int, int]:
        if self.jobs == 1:
            return 1, torch.get_num_threads()
        return choose_workers(self.jobs, jobs, device)

    def run(self, jobs: Sequence[Job], settings: LaunchSettings) -> dict[str, Any]:
        device, workers = settings.device, settings.workers
        gpus = range(visible_gpus()) if device is not None and pins_devices(workers, device) else ()
        return run_jobs(
            jobs,
            workers,
            settings.threads,
            settings.say,
            settings.progress,
            settings.registrations,
            list(gpus),
        )

    def describe(self) -> str:
        return "local: this machine's processes"
