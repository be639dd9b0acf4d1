"""The bench's training runs side by side: `--jobs N` worker processes, each with its share of
the CPU threads.

Why: the quick profile's 64 px networks use a second thread poorly. On 2 cores a training step
with 2 threads takes 0.63x (two_stage) and 0.71x (FOMM) of its time with 1, while two runs
with 1 thread each, trained at the same time, keep nearly their 1-thread speed; two at a time
then finish in about 0.82x of the time one after the other takes
(`benchmarks/scripts/bench_side_by_side.py`; inside a whole bench, where the loader processes
compete too, less: see benchmarks/README.md).

How: each job runs in a spawned worker process through the same functions as a sequential bench
(`train_run`, `reconstruct_run`): the same folders, locks, checkpoints and resume, so a bench
killed mid-way resumes the same either way. A row reconstructs its test videos (and its
controls) in its worker after training. The evaluators and the detector prior are not jobs: the
bench trains them before, with every thread, so that the ruler and the keypoint maskers'
detector are the same whatever `--jobs` is (the prior is also the longest run). A job that
fails stops new ones from starting; the ones running finish (their work is kept) and the first
failure is raised.

The number of threads changes the order of float sums, so a row trained with 1 thread is not
bitwise the row trained with 2: its scores move as another seed would move them (training
noise, which the bootstrap intervals do not cover); the results header says how the rows were
trained.
"""

from __future__ import annotations

import csv
import functools
import multiprocessing
import os
import pickle
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import attrs
import torch

from kptoolkit.engine.reconstruction import ReconstructionMode
from kptoolkit.errors import ConfigError
from kptoolkit.experiment.plan import Plan
from kptoolkit.registry.registries import in_process_registrations, restore_registrations
from kptoolkit.utils.processes import child_processes, die_with_parent, stop_processes

PROGRESS_EVERY_S = 60.0  # a progress line per running job this often


def choose_workers(requested: int | None, jobs: int, device: torch.device) -> tuple[int, int]:
    """(worker processes, torch threads per worker) for `jobs` trainings.

    `requested` None (auto): on a CPU one worker per thread, up to the number of jobs; on a GPU
    one (it is one device). Never more workers than jobs, at least one thread each.
    """
    if requested is not None and requested < 1:
        raise ConfigError(f"--jobs must be at least 1, got {requested}")
    threads = torch.get_num_threads()
    if requested is None:
        requested = threads if device.type == "cpu" else 1
    workers = max(1, min(requested, jobs))
    return workers, max(1, threads // workers)


@attrs.frozen
class Prefixed:
    """A `say` for a worker process: prints each line after a fixed prefix (picklable)."""

    prefix: str

    def __call__(self, text: str) -> None:
        print(f"{self.prefix} {text}", flush=True)


@attrs.frozen
class Job:
    """One training to run in a worker.

    `work(*arguments())` runs there (a module-level function, its arguments picklable);
    `arguments` is called in this process when the job starts, so that it checks the run's
    folder then. `log_dir` is the run folder whose `losses.csv` tells the job's progress.
    """

    key: str
    label: str
    work: Callable[..., Any]
    arguments: Callable[[], Sequence[Any]]
    log_dir: Path | None = None


def _start_worker(threads: int, registrations: dict[str, dict[str, Any]], parent: int) -> None:
    die_with_parent(parent)  # a killed bench leaves no worker training on
    torch.set_num_threads(threads)
    restore_registrations(registrations)


def registrations_for_workers() -> dict[str, dict[str, Any]] | None:
    """This process's in-process components, if a worker can receive them (None when one of
    them cannot be pickled, e.g. a class defined inside a function)."""
    registrations = in_process_registrations()
    try:
        pickle.dumps(registrations)
    except (pickle.PicklingError, AttributeError, TypeError):
        return None
    return registrations


def train_row_in_worker(
    run_dir: str,
    plan: Plan,
    label: str,
    device: str,
    prefix: str,
    controls: dict[str, ReconstructionMode] | None = None,
    runs_at_once: int = 1,
) -> dict[str, Any]:
    """A row's `train_run` of its `plan`, in a worker; with
    `controls`, then its test reconstructions, by the protocol and as each control, so that
    they too run beside other work (the bench's reconstruct stage finds them done)."""
    from kptoolkit.bench.stages.reconstruction import reconstruct_run
    from kptoolkit.bench.stages.training import train_run
    from kptoolkit.experiment.build import build_dataset

    experiment = plan.config
    folder, say = Path(run_dir), Prefixed(prefix)
    record = train_run(folder, plan, label, torch.device(device), False, say, runs_at_once)
    if controls is None:
        return record
    checkpoint = folder / "checkpoints" / record["checkpoint"]
    test = functools.cache(lambda: build_dataset(experiment, "test"))
    for control, mode in {None: None, **controls}.items():
        reconstruct_run(
            folder,
            checkpoint,
            test,
            control,
            mode,
            precision=experiment.eval.precision,
            device=torch.device(device),
            progress=False,
            label=label + (f" [{control}]" if control else ""),
            say=say,
        )
    return record


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
) -> dict[str, Any]:
    """Run `jobs` in `workers` processes of `threads` threads, in the given order, each as soon
    as a worker is free; returns their results by key. After a failure no job starts; the
    running ones finish and the first failure is raised.
    `registrations` (`registrations_for_workers`) are registered in each worker first."""
    if len({job.key for job in jobs}) != len(jobs):
        raise ValueError("two jobs have the same key")
    results: dict[str, Any] = {}
    waiting = list(jobs)
    running: dict[Future[Any], tuple[Job, float]] = {}
    failures: list[tuple[Job, BaseException]] = []
    context = multiprocessing.get_context("spawn")  # no fork of a process with torch threads
    before = child_processes()
    pool = ProcessPoolExecutor(
        workers,
        mp_context=context,
        initializer=_start_worker,
        initargs=(threads, registrations or {}, os.getpid()),
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
