"""Convolutions stored with video kernels of one frame: the layout of Monkey-Net's checkpoints.

Monkey-Net's networks are 3-D convolutional networks over (B,C,T,H,W) videos whose kernels span
one frame ((1,k,k)), so applied to a single frame they are plain 2-D convolutions. kptoolkit runs
them on (B,C,H,W) frames with `conv2d`, while the parameters keep the official 5-D shape
(out, in/groups, 1, k, k), so official state dicts load strictly and saved ones stay official.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn


class FrameKernelConv(nn.Conv3d):
    """A 2-D convolution of frames whose weight is stored as a (1,k,k) video kernel."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, groups: int = 1
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            (1, kernel_size, kernel_size),
            padding=(0, kernel_size // 2, kernel_size // 2),
            groups=groups,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(
            x, self.weight.squeeze(2), self.bias, padding=self.padding[1:], groups=self.groups
        )


def with_frame_kernels(module: nn.Module) -> nn.Module:
    """`module` with every `nn.Conv2d` (odd square kernel, stride 1, 'same' padding) replaced by
    a `FrameKernelConv` of the same configuration and values; returned for chaining."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Conv2d):
            kernel = child.kernel_size[0]
            if (
                child.kernel_size != (kernel, kernel)
                or child.stride != (1, 1)
                or child.padding != (kernel // 2, kernel // 2)
            ):
                raise ValueError(f"{name}: only stride-1 'same' square convolutions convert")
            conv = FrameKernelConv(child.in_channels, child.out_channels, kernel, child.groups)
            with torch.no_grad():  # keep the values (and any custom initialisation)
                conv.weight.copy_(child.weight.unsqueeze(2))
                if child.bias is None:
                    conv.bias = None
                else:
                    conv.bias.copy_(child.bias)
            setattr(module, name, conv)
        else:
            with_frame_kernels(child)
    return module


def to_memory_format(module: nn.Module, memory_format: torch.memory_format) -> nn.Module:
    """`module.to(memory_format=...)` for its 4-D tensors only.

    torch refuses `channels_last` for 5-D tensors, such as the video kernels of
    `FrameKernelConv`; those keep their layout (they enter `conv2d` as 4-D views).
    """
    with torch.no_grad():
        for tensor in itertools.chain(module.parameters(), module.buffers()):
            if tensor.dim() == 4 and not tensor.is_contiguous(memory_format=memory_format):
                tensor.data = tensor.data.contiguous(memory_format=memory_format)
    return module
