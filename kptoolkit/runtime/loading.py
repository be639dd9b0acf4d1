"""How many loader processes a training run uses: `data.num_workers: auto` resolved once, with
the plan.

A loader process decodes and collates batches beside the training process. On a GPU that is
free: the CPU would otherwise wait. On a CPU it is not: the loader takes cores from the training
threads. On a 2-core CPU training with 2 threads, two loader processes made a FOMM step 1.10x
slower than loading in the training process (docs/performance.md, "Loading the batches"). So
`auto` starts loader processes on a CPU only for cores the training threads leave idle.

The batches are the same either way: an item depends on (seed, epoch, index) alone
(`kptoolkit.data.datasets.FramesDataset`), so the count never changes a trained model.
"""

from __future__ import annotations

import torch

from kptoolkit.config.schema import AUTO
from kptoolkit.runtime.hardware import usable_cpus

# loader processes `auto` starts on a GPU (the count kptoolkit always used there) and at most
# on a CPU with idle cores
GPU_LOADER_WORKERS = 2
MAX_CPU_LOADER_WORKERS = 2


def resolve_loader_workers(
    requested: int | str, device_type: str, training_threads: int | None = None
) -> int:
    """The loader processes for `requested` (a count, kept as it is, or 'auto') when training
    on a device of `device_type` with `training_threads` torch threads (None: the process's
    count): GPU_LOADER_WORKERS on CUDA; on a CPU one per core the training threads leave idle,
    up to MAX_CPU_LOADER_WORKERS (none on a CPU the threads fill)."""
    if requested != AUTO:
        return int(requested)
    if device_type == "cuda":
        return GPU_LOADER_WORKERS
    threads = training_threads or torch.get_num_threads()
    return max(0, min(MAX_CPU_LOADER_WORKERS, usable_cpus() - threads))
