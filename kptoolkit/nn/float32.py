"""Run coordinate arithmetic in float32, also under autocast.

Keypoints, sampling grids and the softmax that places keypoints need more than bfloat16's
8 significant bits: 2^-8 of the [-1, 1] range is half a pixel at 256 px. Functions decorated
with `float32_op` run with autocast disabled and their bfloat16 / float16 tensor arguments cast
to float32. Without autocast and with float32 inputs they run exactly as undecorated.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import torch

F = TypeVar("F", bound=Callable[..., Any])
_LOW_PRECISION = (torch.bfloat16, torch.float16)


def _widen(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.dtype in _LOW_PRECISION:
        return value.float()
    return value


def float32_op(fn: F) -> F:
    """Decorate a pure tensor function so that it computes in float32 under autocast."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
        device_type = tensors[0].device.type if tensors else "cpu"
        if not torch.is_autocast_enabled(device_type) and not any(
            t.dtype in _LOW_PRECISION for t in tensors
        ):
            return fn(*args, **kwargs)
        with torch.autocast(device_type, enabled=False):
            return fn(*(_widen(a) for a in args), **{k: _widen(v) for k, v in kwargs.items()})

    return wrapper  # type: ignore[return-value]


def float32_call(module: torch.nn.Module, *inputs: torch.Tensor) -> Any:
    """`module(*inputs)` in float32 under autocast when the module is in eval mode: for the
    output heads whose values become keypoints, sampling grids or blending masks. In training
    mode, and without autocast, exactly `module(*inputs)`: a mixed-precision training step
    keeps these heads in the lower precision (in float32 they cost FOMM's bfloat16 step 10% on a
    CPU)."""
    if module.training:
        return module(*inputs)
    return float32_op(module)(*inputs)
