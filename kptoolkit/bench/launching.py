"""The bench's side of the launchers: building the one `--launcher` names, and the jobs that
every row waits for (the detector prior, the evaluators trained on the dataset) when the
launcher runs jobs elsewhere (on this machine they train in the bench's own process, with
every thread)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from kptoolkit.bench.plan import BenchOptions
from kptoolkit.bench.stages.parallel import Prefixed
from kptoolkit.errors import ConfigError
from kptoolkit.launchers.base import Job, Launcher, LaunchSettings, WithRegistrations
from kptoolkit.registry.registries import EVALUATORS, LAUNCHERS


def build_launcher(options: BenchOptions) -> Launcher:
    """The launcher `--launcher` names with its `--launcher-set` parameters (`--jobs` is the
    local launcher's worker count)."""
    params = dict(options.launcher_params)
    if options.launcher == "local":
        params.setdefault("jobs", options.jobs)
    elif options.jobs != 1:
        raise ConfigError(
            f"--jobs sets the local launcher's workers; the {options.launcher} launcher runs "
            "every row as a job of its own (its settings: --launcher-set key=value)"
        )
    return LAUNCHERS.create(options.launcher, **params)


def job_device(device: torch.device, runs_here: bool, runs_at_once: int) -> str:
    """The device a job is given: on CUDA, plain "cuda" wherever the job has GPUs of its own (a
    local worker pinned to one, a SLURM job's or a Ray task's: `cuda:N` of the bench's machine
    means nothing there), else the bench's own."""
    if device.type == "cuda" and (not runs_here or runs_at_once > 1):
        return "cuda"
    return str(device)


def prior_job(stages: list[Any], device: str, prefix: str) -> str:
    """Train (or reuse) the detector prior's stages where the launcher runs jobs; returns the
    final checkpoint's path."""
    from kptoolkit.bench.stages.detector_prior import ensure_prior

    return str(ensure_prior(stages, torch.device(device), Prefixed(prefix), progress=False))


def evaluator_job(name: str, root: str, steps: int | None) -> str:
    """Train (or reuse) a dataset's evaluator where the launcher runs jobs, into the dataset's
    cache; returns its name."""
    params: dict[str, Any] = {"root": root, "progress": False}
    if steps is not None:
        params["steps"] = steps
    EVALUATORS.create(name, **params)
    return name


def run_waited_job(
    launcher: Launcher,
    key: str,
    label: str,
    work: Callable[..., Any],
    arguments: tuple[Any, ...],
    say: Callable[[str], None],
    registrations: dict[str, dict[str, Any]] | None,
    device: torch.device,
) -> Any:
    """Run one job that the rows wait for on `launcher` (every thread of its job) and return
    its result."""
    say(f"{label}: a job on the {launcher.describe()}")
    job = Job(key, label, WithRegistrations(work, registrations or {}), lambda: arguments)
    settings = LaunchSettings(1, torch.get_num_threads(), say, False, registrations, device)
    results = launcher.run([job], settings)
    return results[key]


def trains_evaluator(name: str, root: Path | None) -> bool:
    """Whether building evaluator `name` may train it on the dataset (it takes a root)."""
    import inspect

    return root is not None and "root" in inspect.signature(EVALUATORS.get(name)).parameters
