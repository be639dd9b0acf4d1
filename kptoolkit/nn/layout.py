"""Keep activations in the memory layout of the convolutions that read them.

A model moved to channels_last has channels_last kernels, and a convolution given a tensor in
another layout copies it first, in the forward and again in the backward pass. Tensors made by
`grid_sample` or by concatenation with a contiguous input come out contiguous; converting them
once where they are made saves those copies. The conversion keeps every value; what follows
may round differently (batch norm sums its statistics in another order), as with any change of
layout.
"""

from __future__ import annotations

import torch


def memory_format_of(weight: torch.Tensor) -> torch.memory_format:
    """`torch.channels_last` when the 4-D `weight` is stored channels_last (and not also
    contiguous, as 1x1 kernels of one channel are), else `torch.contiguous_format`."""
    if (
        weight.dim() == 4
        and weight.is_contiguous(memory_format=torch.channels_last)
        and not weight.is_contiguous()
    ):
        return torch.channels_last
    return torch.contiguous_format


def in_layout_of(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """`x` in the memory layout of the convolution kernel `weight` (itself when it already is)."""
    return x.contiguous(memory_format=memory_format_of(weight))
