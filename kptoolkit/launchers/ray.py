"""The Ray launcher (`pip install 'kptoolkit[ray]'`): each bench job (row x seed, detector prior,
evaluator) a Ray task, on a local cluster the bench starts and stops itself or on a running one.
The stage cache on the file system is the contract (`kptoolkit.launchers.base`): on several
machines the bench folder (`--out`), the cache (`KPTOOLKIT_CACHE`) and the task logs must lie on
a file system the nodes share, at the same paths, with working `flock` locks."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

from kptoolkit.errors import ConfigError
from kptoolkit.launchers.base import Job, Launcher, LauncherError, LaunchSettings, require
from kptoolkit.launchers.local import PROGRESS_EVERY_S, last_logged_step, visible_gpus
from kptoolkit.runtime.hardware import torch_threads, usable_cpus
from kptoolkit.utils.paths import cache_dir

POLL_S = 1.0  # how often the tasks' states and logs are read
LOGS_NAME = "ray"  # the task logs' folder: beside the run folders' folder, or in the cache
STARTED = "kptoolkit ray task started"  # the first line of each try in a task's log
OBJECT_STORE_BYTES = 128 * 1024**2  # a local cluster's: the tasks pass plans and small records
RAY_ENVIRONMENT = {"RAY_USAGE_STATS_ENABLED": "0"}  # no usage report sent over the network
# A local cluster listens on 127.0.0.1 alone (read when ray is imported; 0: no cluster of
# several machines, on Linux too); its processes see a proxy that refuses every request (Ray's
# dashboard asks cloud metadata services where it runs, whatever RAY_USAGE_STATS_ENABLED says),
# and each task sets the bench's own values back (`run_task`).
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
PROXIES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY")
NO_NETWORK: dict[str, str | None] = dict.fromkeys(PROXIES, "http://127.0.0.1:9")
NO_NETWORK |= dict.fromkeys(("no_proxy", "NO_PROXY"), "127.0.0.1,localhost")


class RayLauncher(Launcher):
    """Each job a Ray task, on a local cluster (the default) or on a running one.

    Parameters (`--launcher-set key=value`): `address`: None or `local` (a local cluster, started
    and stopped by each `run`, of this machine's CPUs and the GPUs Ray finds, on 127.0.0.1, no
    dashboard), `auto` (the cluster `ray start` runs here), `ray://host:port` or `host:port`;
    `num_cpus` per task (default: the bench's `threads`); `num_gpus` per task (default: 1 when
    the bench runs on CUDA, else 0); `max_retries` (default 1): a task whose worker dies (killed,
    out of memory, node lost) runs again from its last checkpoint (one that raised does not).

    Threads: Ray sets `OMP_NUM_THREADS` to `num_cpus` in a worker; each task sets torch's count
    to the bench's `threads` (the prior and the evaluators train with the bench process's count,
    as with the local launcher), then a row sets its recorded one (`train.threads`). A worker
    runs one task and exits: no state of a job reaches the next. A task's output goes to its
    log (`<out>/ray/<row>.out`, `<cache>/ray/<job>.out`), whose lines the bench prints.

    Stopping: Ctrl-C cancels the tasks and stops the local cluster; a bench killed outright
    takes it along (Ray's head processes die with it, `PR_SET_PDEATHSIG`, workers without them,
    a watcher kills its agents). A running cluster ends the tasks of a driver that died."""

    runs_here = False

    def __init__(
        self,
        address: str | None = None,
        num_cpus: float | None = None,
        num_gpus: float | None = None,
        max_retries: int = 1,
    ) -> None:
        if not isinstance(address, str | None) or (address is not None and not address.strip()):
            raise ConfigError(f"--launcher-set address: local, auto or host:port, not {address!r}")
        self.address = None if address in (None, "local") else address.strip()
        load_ray(self.address is None)  # said now, before the bench writes anything
        self.num_cpus = _number("num_cpus", num_cpus, strict=True)
        self.num_gpus = _number("num_gpus", num_gpus)
        self.max_retries: int = _number("max_retries", max_retries, whole=True)
        self.cluster_cpus = usable_cpus()
        if self.address is None and (self.num_cpus or 0) > self.cluster_cpus:
            raise ConfigError(f"--launcher-set num_cpus={num_cpus}: {self.describe()} has fewer")

    def plan(self, jobs: int, device: torch.device) -> tuple[int, int]:
        """(jobs at once, torch threads each): every job on a running cluster, as many as a
        local cluster's CPUs (and GPUs) hold; the bench process's threads."""
        threads = torch.get_num_threads()
        if self.address is not None:
            return max(1, jobs), threads
        cpus, gpus = self.resources(threads, device)
        fits = min(self.cluster_cpus // cpus, visible_gpus() // gpus if gpus else jobs)
        return max(1, min(jobs, int(fits))), threads

    def resources(self, threads: int, device: torch.device | None) -> tuple[float, float]:
        """(CPUs, GPUs) each task asks for."""
        most = self.cluster_cpus if self.address is None else threads  # more: wait for ever
        cuda = device is not None and device.type == "cuda"
        gpus = self.num_gpus if self.num_gpus is not None else int(cuda)
        return self.num_cpus or max(1, min(threads, most)), gpus

    def describe(self) -> str:
        if self.address:
            return f"ray (cluster at {self.address})"
        return f"ray (local cluster, {self.cluster_cpus} CPU{'s' if self.cluster_cpus > 1 else ''})"

    def run(self, jobs: Sequence[Job], settings: LaunchSettings) -> dict[str, Any]:
        """Submit every job as a task in order (arguments built then; the cluster, not `workers`,
        says how many run at once), print their logs, say when each ends; return the results by
        key, or raise a `LauncherError` naming the failed jobs and logs once all have ended."""
        if len({job.key for job in jobs}) != len(jobs):
            raise ValueError("two jobs have the same key")
        if not jobs:
            return {}
        ray = load_ray(self.address is None)
        threads = settings.threads
        cpus, gpus = self.resources(threads, settings.device)
        if self.address is None and gpus > visible_gpus():  # a task would wait for ever
            raise ConfigError(
                f"each Ray task asks for {gpus} GPUs, this machine has {visible_gpus()}"
            )
        options = {"num_cpus": cpus, "num_gpus": gpus, "max_retries": self.max_retries}
        with connected(ray, self.address, self.cluster_cpus) as environment:
            task = ray.remote(max_calls=1)(run_task)  # a worker process of its own each
            setting = (threads, environment, os.getcwd())
            say, progress = settings.say, settings.progress
            return _Run(ray, task, options, setting, log_folder(jobs), say, progress).all(jobs)


def load_ray(local: bool) -> Any:
    """`ray` (`RAY_ENVIRONMENT` set, `LOOPBACK` for a `local` cluster), or the one-line error."""
    for key, value in (RAY_ENVIRONMENT | (LOOPBACK if local else {})).items():
        os.environ.setdefault(key, value)
    return require("ray", "ray")


def run_task(setting: tuple[Any, ...], log: str, work: Callable[..., Any], *arguments: Any) -> Any:
    """What a Ray task runs: `work(*arguments)` with the bench's `setting` (torch threads,
    environment values, working folder: relative paths mean the same), its output appended to
    `log`."""
    threads, environment, folder = setting
    set_environment(environment)
    if folder != os.getcwd() and os.path.isdir(folder):
        os.chdir(folder)
    with (
        open(log, "a", buffering=1, encoding="utf-8") as out,
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(out),
    ):
        print(f"{STARTED} in process {os.getpid()} on {socket.gethostname()}")
        try:
            with torch_threads(threads):
                return work(*arguments)
        except BaseException:
            traceback.print_exc()  # the log says where it failed
            raise


def log_folder(jobs: Sequence[Job]) -> Path:
    """The tasks' logs: `<out>/ray` for rows (in `<out>/runs/<row>`), else `<cache>/ray`."""
    rows = [Path(job.log_dir).resolve().parent.parent for job in jobs if job.log_dir is not None]
    return (rows[0] if rows else cache_dir().resolve()) / LOGS_NAME


@contextlib.contextmanager
def connected(ray: Any, address: str | None, cpus: int) -> Iterator[dict[str, str | None]]:
    """Ray for one `run`: a local cluster started (with its watcher) and stopped, or a running
    one; a connection this process had made is used and kept. Yields what each task sets in its
    environment: the bench's values of `NO_NETWORK`, or its cache on a running cluster."""
    if ray.is_initialized():
        yield {}
        return
    before, handler = _children(), signal.getsignal(signal.SIGTERM)
    common = {"log_to_driver": False, "logging_level": logging.WARNING}
    own = set_environment(NO_NETWORK) if address is None else {}
    try:
        if address is None:
            ray.init(
                address="local",  # a new cluster, even where `ray start` runs one
                num_cpus=cpus,
                include_dashboard=False,
                object_store_memory=OBJECT_STORE_BYTES,
                _system_config={"enable_worker_prestart": False},
                **common,
            )
        else:
            ray.init(address=address, **common)
    except Exception as error:  # a port taken, no cluster at the address, ...
        where = "start a local cluster" if address is None else f"connect to {address}"
        raise LauncherError(f"Ray could not {where}: {_one_line(error)}") from error
    finally:  # ray.init makes SIGTERM raise SystemExit: the bench keeps its own handling
        set_environment(own)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, handler)
    watcher = None
    if address is None and sys.platform.startswith("linux"):
        roots = map(str, sorted(_children() - before))  # Ray's head processes
        watcher = subprocess.Popen([sys.executable, "-c", WATCHER, *roots], stdin=subprocess.PIPE)
    try:
        yield own if address is None else {"KPTOOLKIT_CACHE": str(cache_dir().resolve())}
    finally:
        try:
            ray.shutdown()
        finally:
            if watcher is not None:  # its pipe closes: it kills what is left, then ends
                with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                    watcher.communicate(timeout=30)
                if watcher.poll() is None:
                    watcher.kill()


@attrs.define
class _Submitted:
    """A submitted job: its task, its log, how much of it was printed, its tries."""

    job: Job
    ref: Any
    log: Path
    started: float = attrs.field(factory=time.perf_counter)
    read: int = 0
    tries: int = 0


@attrs.define
class _Run:
    """The state of one `RayLauncher.run`."""

    ray: Any
    task: Any  # the remote function
    options: dict[str, Any]  # its resources and retries
    setting: tuple[Any, ...]  # `run_task`'s
    logs: Path  # the tasks' logs' folder
    say: Callable[[str], None]
    progress: bool
    active: dict[Any, _Submitted] = attrs.field(factory=dict)
    results: dict[str, Any] = attrs.field(factory=dict)
    failures: list[str] = attrs.field(factory=list)

    def all(self, jobs: Sequence[Job]) -> dict[str, Any]:
        due = time.perf_counter() + PROGRESS_EVERY_S  # the next progress line
        try:
            for job in jobs:
                self.submit(job)
            while self.active:
                refs = list(self.active)
                ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=POLL_S)
                for entry in self.active.values():
                    self.relay(entry)
                for ref in ready:
                    self.finish(self.active.pop(ref))
                if self.progress and self.active and time.perf_counter() > due:
                    due = time.perf_counter() + PROGRESS_EVERY_S
                    self.say(self.progress_line())
        except BaseException:
            self.cancel()  # interrupted (Ctrl-C): the tasks stop too
            raise
        if self.failures:
            raise LauncherError("\n".join(self.failures))
        return self.results

    def submit(self, job: Job) -> None:
        log = self.logs / f"{re.sub(r'[^A-Za-z0-9._+-]', '_', job.key)}.out"
        try:
            arguments = job.arguments()
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text("", encoding="utf-8")  # this run's log
        except Exception as error:  # its config refused, no folder for its log
            self.failures.append(f"{job.label}: not submitted: {_one_line(error)}")
            return
        task = self.task.options(name=job.label, **self.options)
        ref = task.remote(self.setting, str(log), job.work, *arguments)
        self.active[ref] = _Submitted(job, ref, log)

    def finish(self, entry: _Submitted) -> None:
        self.relay(entry)
        job, minutes = entry.job, (time.perf_counter() - entry.started) / 60
        try:
            self.results[job.key] = self.ray.get(entry.ref)
        except Exception as error:
            self.failures.append(f"{job.label}: {_cause(self.ray, error)}; its log: {entry.log}")
            if self.active:
                names = ", ".join(e.job.label for e in self.active.values())
                self.say(f"{job.label} failed; waiting for {names} to finish")
            return
        self.say(f"{job.label}: Ray task finished in {minutes:.1f} min")

    def relay(self, entry: _Submitted) -> None:
        """Print the task's new complete log lines; say when Ray runs it again."""
        try:
            with open(entry.log, "rb") as handle:
                handle.seek(entry.read)
                text = handle.read()
        except OSError:
            return
        end = text.rfind(b"\n") + 1
        entry.read += end
        for line in text[:end].decode("utf-8", "replace").splitlines():
            if not line.startswith(STARTED):
                print(line, flush=True)
                continue
            entry.tries += 1
            if entry.tries > 1:
                tries = f"try {entry.tries} of {self.options['max_retries'] + 1}"
                self.say(
                    f"{entry.job.label}: its Ray worker ended before the job did; Ray runs it "
                    f"again ({tries}), resuming from its last checkpoint"
                )

    def cancel(self) -> None:
        for ref in self.active:
            with contextlib.suppress(Exception):  # finished meanwhile, or Ray already gone
                self.ray.cancel(ref, force=True)

    def progress_line(self) -> str:
        now, parts = time.perf_counter(), []
        for entry in self.active.values():
            step = last_logged_step(entry.job.log_dir)
            where = "queued or starting" if step is None else f"step {step}"
            parts.append(f"{entry.job.label} at {where} ({(now - entry.started) / 60:.1f} min)")
        return "Ray tasks: " + "; ".join(parts)


# A local cluster's watcher (`python -c`: no torch to import) notes the processes below Ray's
# head processes twice a second; when the bench ends (its pipe closes, or it is no longer the
# parent) it kills those still alive (same start times: the same processes). Linux (/proc).
WATCHER = r"""
import contextlib, os, select, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
parent, roots, seen = os.getppid(), {int(p) for p in sys.argv[1:]}, {}
def table():
    found = {}
    for name in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError, IndexError), open("/proc/" + name + "/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
            found[int(name)] = (int(fields[1]), fields[19])
    return found
while os.getppid() == parent:
    processes, family, grew = table(), set(roots), True
    while grew:
        grew = [p for p, (pp, _) in processes.items() if pp in family and p not in family]
        family.update(grew)
    seen.update((p, processes[p][1]) for p in family if p in processes)
    if select.select([0], [], [], 0.5)[0] and not os.read(0, 4096):
        break
alive = table()
for pid in [p for p, started in seen.items() if p in alive and alive[p][1] == started]:
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
"""


def set_environment(values: dict[str, str | None]) -> dict[str, str | None]:
    """Set (None: unset) these environment variables; returns their values before."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update({name: value for name, value in values.items() if value is not None})
    for name in [name for name, value in values.items() if value is None]:
        os.environ.pop(name, None)
    return before


def _children() -> set[int]:
    """The ids of this process's child processes (Linux; empty elsewhere)."""
    found: set[int] = set()
    for path in Path("/proc/self/task").glob("*/children"):
        with contextlib.suppress(OSError, ValueError):
            found.update(map(int, path.read_text().split()))
    return found


def _number(name: str, value: Any, strict: bool = False, whole: bool = False) -> Any:
    """A parameter's number: > 0 (`strict`) or >= 0, a whole one with `whole` (None stays)."""
    number = isinstance(value, int if whole else int | float) and not isinstance(value, bool)
    if value is None or (number and value >= 0 and (value > 0 or not strict)):
        return value
    kind = f"{'a whole number' if whole else 'a number'} {'>' if strict else '>='} 0"
    raise ConfigError(f"--launcher-set {name} takes {kind}, got {value!r}")


def _cause(ray: Any, error: BaseException) -> str:
    """One line for a task's error: the job's own exception, or why its worker ended."""
    if isinstance(error, ray.exceptions.RayTaskError) and error.cause is not None:
        return f"failed: {_one_line(error.cause)}"
    return f"the Ray task ended: {_one_line(error)}"


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
