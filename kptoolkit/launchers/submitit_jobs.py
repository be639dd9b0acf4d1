"""The jobs of one submitit launch: each wrapped to hold its key's lock and run with the bench's
threads (`JobTask`), submitted in order, polled, resubmitted when one died without a result,
their output relayed to the bench, and a record of each running job, so that another bench
waits for it instead of training the same row twice."""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import torch

from kptoolkit.launchers.base import Job, LauncherError
from kptoolkit.launchers.local import PROGRESS_EVERY_S, last_logged_step
from kptoolkit.utils.locks import exclusive

if TYPE_CHECKING:
    from kptoolkit.launchers.submitit import SubmititLauncher

POLL_S = 1.0  # how often the jobs' states and logs are read


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
class Submitted:
    """One job of a `run`: waiting for another bench's job of its key, or submitted."""

    job: Job
    tries: int = 0  # submissions so far
    handle: Any = None  # the submitit job
    started: float = attrs.field(factory=time.perf_counter)
    read: int = 0  # how much of its stdout was relayed
    waiting_for: str | None = None  # another bench's job of this key, still running


class SubmittedRun:
    """The state of one `SubmititLauncher.run`: what is queued, running, finished or failed."""

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
        self.active: list[Submitted] = []
        self.results: dict[str, Any] = {}
        self.failures: list[str] = []

    def all(self, jobs: Sequence[Job], workers: int) -> dict[str, Any]:
        waiting = list(jobs)
        reported = time.perf_counter()
        while waiting or self.active:
            while not self.failures and waiting and len(self.active) < workers:
                self.start(Submitted(waiting.pop(0)))
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
    def start(self, entry: Submitted) -> None:
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

    def poll(self, entry: Submitted) -> None:
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

    def record(self, entry: Submitted) -> None:
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

    def relay(self, entry: Submitted) -> None:
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
