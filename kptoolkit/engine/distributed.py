"""Process-group setup for `torchrun` (gloo on CPU, nccl on GPU) and small collective helpers."""

from __future__ import annotations

import os

import attrs
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@attrs.frozen
class DistContext:
    """This process's place in the run: rank, world size and device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = attrs.field(factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, writes samples and checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one process."""
        return self.world_size > 1


def init_distributed(device: str | None = None) -> DistContext:
    """Join the process group `torchrun` describes in the environment, or run alone."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    target = torch.device(device)
    if target.type == "cuda":
        torch.cuda.set_device(target)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if target.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistContext(rank, world_size, local_rank, target)


def shutdown_distributed() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_initialized():
        dist.destroy_process_group()


def mean_across_ranks(values: dict[str, float], context: DistContext) -> dict[str, float]:
    """Average scalar logs over ranks (what rank 0 writes is the global figure)."""
    if not context.distributed or not values:
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=context.device)
    dist.all_reduce(tensor)
    return {k: float(v) / context.world_size for k, v in zip(keys, tensor.tolist(), strict=True)}


def barrier(context: DistContext) -> None:
    """Wait for every rank."""
    if context.distributed:
        dist.barrier()


def wrap_for_ddp(
    groups: dict[str, nn.Module], context: DistContext, device: torch.device
) -> dict[str, nn.Module]:
    """The trainable networks, each in DistributedDataParallel when several processes train
    (networks without trainable parameters are left out then); as they are otherwise."""
    if not context.distributed:
        return dict(groups)
    device_ids = [device.index] if device.type == "cuda" else None
    return {
        name: DistributedDataParallel(module, device_ids=device_ids)
        for name, module in groups.items()
        if any(p.requires_grad for p in module.parameters())
    }
