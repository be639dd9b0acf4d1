"""BatchNorm whose statistics cover the global batch across processes, on CPU and GPU alike.

torch's SyncBatchNorm runs only on accelerators. This one all-reduces per-rank sums through
`torch.distributed.nn.functional.all_reduce`, which is differentiable, so forward and backward
equal those of one process on the whole global batch.
"""

from __future__ import annotations

import warnings

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
from torch import nn


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d with batch statistics over all ranks (same parameters and buffers)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        dims = (0, 2, 3)
        local_count = torch.tensor(
            [x.shape[0] * x.shape[2] * x.shape[3]], dtype=x.dtype, device=x.device
        )
        stats = torch.cat([x.sum(dims), (x * x).sum(dims), local_count])
        with warnings.catch_warnings():  # its replacement has no autograd support yet
            warnings.simplefilter("ignore", FutureWarning)
            stats = dist_nn.all_reduce(stats)
        channels = x.shape[1]
        total, total_sq, count = stats[:channels], stats[channels : 2 * channels], stats[-1]
        mean = total / count
        var = (total_sq / count - mean * mean).clamp_min(0)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                momentum = self.momentum if self.momentum is not None else 0.1
                unbiased = var * count / (count - 1).clamp_min(1)
                self.running_mean.mul_(1 - momentum).add_(momentum * mean.detach())
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased.detach())
                self.num_batches_tracked.add_(1)
        shape = (1, channels, 1, 1)
        out = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def convert_to_global_batchnorm(module: nn.Module) -> nn.Module:
    """Swap every BatchNorm2d in `module` for a GlobalBatchNorm2d, keeping its tensors."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            replacement = GlobalBatchNorm2d(
                child.num_features,
                child.eps,
                child.momentum,
                child.affine,
                child.track_running_stats,
            )
            replacement.load_state_dict(child.state_dict())
            replacement.train(child.training)
            replacement.to(next(child.buffers(), torch.empty(0)).device)
            setattr(module, name, replacement)
        else:
            convert_to_global_batchnorm(child)
    return module
