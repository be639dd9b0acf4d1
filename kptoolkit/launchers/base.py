"""What every launcher shares: the job it runs, the interface the bench calls, and the one-line
error for an engine whose package is not installed.

A job is a module-level function and the picklable arguments it is called with: a bench row's
plan and its run folder, or the detector prior's stages. The bench's stage cache on the file
system is the contract between the bench and wherever its jobs run: a job writes its stages into
its folder (locked while it runs), the bench reads only finished stages, and a rerun reuses what
finished. A launcher only has to run the jobs and say which failed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import attrs
import torch

from kptoolkit.errors import KptoolkitError
from kptoolkit.registry.registries import restore_registrations


class LauncherError(KptoolkitError):
    """A launcher that cannot start, or a job that failed where it ran."""


def require(module: str, extra: str) -> ModuleType:
    """Import an engine's package, or fail in one line saying which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise LauncherError(
            f"this launcher needs the '{module}' package: python -m pip install "
            f"'kptoolkit[{extra}]' (or pip install {module})"
        ) from None


@attrs.frozen
class Job:
    """One training to run where the launcher runs jobs.

    `work(*arguments())` runs there (a module-level function, its arguments picklable);
    `arguments` is called in the bench's process when the job starts, so that it checks the
    run's folder then. `log_dir` is the run folder whose `losses.csv` tells the job's progress.
    """

    key: str
    label: str
    work: Callable[..., Any]
    arguments: Callable[[], Sequence[Any]]
    log_dir: Path | None = None


@attrs.frozen
class LaunchSettings:
    """How one `Launcher.run` runs its jobs: at most `workers` at once, `threads` torch threads
    each, on `device`'s kind (None: the CPU); `say` prints a progress line, `progress` asks for
    a line per job while it trains; `registrations` are the bench process's in-process
    components (`WithRegistrations`)."""

    workers: int = 1
    threads: int = 1
    say: Callable[[str], None] = print
    progress: bool = True
    registrations: dict[str, dict[str, Any]] | None = None
    device: torch.device | None = None


@attrs.frozen
class WithRegistrations:
    """`work`, called after registering the bench process's in-process components (so that a
    job started by any engine builds the same components)."""

    work: Callable[..., Any]
    registrations: dict[str, dict[str, Any]] = attrs.field(factory=dict)

    def __call__(self, *arguments: Any) -> Any:
        restore_registrations(self.registrations)
        return self.work(*arguments)


class Launcher:
    """Runs a bench's jobs: subclass it, register the class under the entry-point group
    `kptoolkit.launchers`, and `kptoolkit bench --launcher NAME --launcher-set key=value`
    builds it with those parameters.

    `runs_here`: the jobs run in processes of this machine, and one job alone runs in the
    bench's own process (the local launcher); otherwise every job goes to the engine, the
    detector prior and the evaluators included.
    """

    runs_here: ClassVar[bool] = False

    def plan(self, jobs: int, device: torch.device) -> tuple[int, int]:
        """(jobs that run at once, torch threads per job) for `jobs` trainings on `device`."""
        return max(1, jobs), torch.get_num_threads()

    def run(self, jobs: Sequence[Job], settings: LaunchSettings) -> dict[str, Any]:
        """Run `jobs` as `settings` say, in the given order; returns their results by key. A
        failed job is raised (as a `LauncherError` naming its log where the engine keeps one)
        once the others have finished."""
        raise NotImplementedError

    def describe(self) -> str:
        """One line for the bench's log: the engine and where it runs jobs."""
        return type(self).__name__
