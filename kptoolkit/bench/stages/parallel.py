"""A bench row as a job that runs wherever the launcher runs jobs: its training, then its test
reconstructions (by the protocol and as each control), in the same folders, with the same
locks, checkpoints and resume as a sequential bench, so a bench killed mid-way resumes the same
either way. The evaluators and the detector prior are not row jobs: every row waits for them.

The number of threads changes the order of float sums, so a row trained with 1 thread is not
bitwise the row trained with 2: each row records its count (`train.threads`) and a resumed or
cached row keeps it; the results header says how each row was trained.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import attrs
import torch

from kptoolkit.engine.reconstruction import ReconstructionMode
from kptoolkit.experiment.plan import Plan
from kptoolkit.runtime.hardware import torch_threads


@attrs.frozen
class Prefixed:
    """A `say` for a worker process: prints each line after a fixed prefix (picklable)."""

    prefix: str

    def __call__(self, text: str) -> None:
        print(f"{self.prefix} {text}", flush=True)


def train_row_in_worker(
    run_dir: str,
    plan: Plan,
    label: str,
    device: str,
    prefix: str,
    controls: dict[str, ReconstructionMode] | None = None,
    runs_at_once: int = 1,
) -> dict[str, Any]:
    """A row's `train_run` of its `plan`, in a worker (or wherever a launcher runs it), with
    the row's torch threads; with `controls`, then its test reconstructions, by the protocol
    and as each control, so that they too run beside other work (the bench's reconstruct stage
    finds them done)."""
    with torch_threads(plan.config.train.threads):  # wherever it runs: the row's own count
        return _train_and_reconstruct(
            Path(run_dir),
            plan,
            label,
            torch.device(device),
            Prefixed(prefix),
            controls,
            runs_at_once,
        )


def _train_and_reconstruct(
    folder: Path,
    plan: Plan,
    label: str,
    device: torch.device,
    say: Prefixed,
    controls: dict[str, ReconstructionMode] | None,
    runs_at_once: int,
) -> dict[str, Any]:
    from kptoolkit.bench.stages.reconstruction import reconstruct_run
    from kptoolkit.bench.stages.training import train_run
    from kptoolkit.experiment.build import build_dataset

    experiment = plan.config
    record = train_run(folder, plan, label, device, False, say, runs_at_once)
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
            device=device,
            progress=False,
            label=label + (f" [{control}]" if control else ""),
            say=say,
        )
    return record
