"""Numerical precision of inference: exact float32, or bfloat16 / float16 autocast.

`fp32` runs the networks as they are (bitwise equal to a plain call). `bf16` and `fp16` run them
under `torch.autocast`: convolutions and matrix products in the lower precision, everything
returned cast back to float32. On the CPU only `bf16` is offered (float16 convolutions are slow
there); on CUDA both are. `inference_model` wraps one network (a generator, a masker, a
detector) so that it is called like the original, in eval mode, in the channels_last layout and
at the chosen precision.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from typing import Any

import attrs
import torch
from torch import nn

from kptoolkit.config import PRECISIONS
from kptoolkit.errors import KptoolkitError
from kptoolkit.nn.video_kernels import to_memory_format

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class PrecisionError(KptoolkitError):
    """A precision that is unknown or that the device cannot run."""


def _check_known(precision: str) -> None:
    if precision not in PRECISIONS:
        raise PrecisionError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


def check_precision(precision: str, device: torch.device | str = "cpu") -> None:
    """Raise a `PrecisionError` unless `precision` is one of `PRECISIONS` and runs on `device`."""
    _check_known(precision)
    device_type = torch.device(device).type
    if precision == "fp16" and device_type != "cuda":
        raise PrecisionError(
            f"fp16 inference runs on CUDA only (this device is {device_type}); "
            "use bf16 or fp32 on the CPU"
        )
    if precision == "bf16" and device_type == "cuda" and not torch.cuda.is_bf16_supported():
        raise PrecisionError("this CUDA device has no bfloat16 support; use fp16 or fp32")


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a precision (None for fp32, which runs without autocast)."""
    _check_known(precision)
    return _AUTOCAST_DTYPES.get(precision)


@contextlib.contextmanager
def autocast(precision: str, device: torch.device | str = "cpu") -> Iterator[None]:
    """Autocast to the precision's dtype on `device` for the duration (nothing for fp32)."""
    check_precision(precision, device)
    dtype = autocast_dtype(precision)
    if dtype is None:
        yield
        return
    with torch.autocast(torch.device(device).type, dtype=dtype):
        yield


def to_float32(value: Any) -> Any:
    """`value` with every bfloat16 / float16 tensor in it cast to float32 (tensors, attrs
    classes such as `Structure`, dicts, lists and tuples, recursively); the rest unchanged."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.dtype in (torch.bfloat16, torch.float16) else value
    if attrs.has(type(value)):
        changes = {
            field.name: to_float32(getattr(value, field.name))
            for field in attrs.fields(type(value))
            if field.init
        }
        return attrs.evolve(value, **changes)
    if isinstance(value, dict):
        return type(value)((key, to_float32(item)) for key, item in value.items())
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a named tuple
        return type(value)(*(to_float32(item) for item in value))
    if isinstance(value, (list, tuple)):
        return type(value)(to_float32(item) for item in value)
    return value


def module_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (the CPU for a module without any)."""
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        return tensor.device
    return torch.device("cpu")


def channels_last_input(value: Any) -> Any:
    """4-D tensors in the channels_last layout; anything else unchanged."""
    if isinstance(value, torch.Tensor) and value.dim() == 4:
        return value.contiguous(memory_format=torch.channels_last)
    return value


class InferenceModule(nn.Module):
    """A network prepared for inference, called like the original.

    The wrapped module is put in eval mode (and kept there) and, with `channels_last`, in the
    channels_last layout; every call runs under `torch.inference_mode()` and the precision's
    autocast, with 4-D tensor arguments in the module's layout, and returns the original's
    outputs with lower-precision tensors cast to float32. With `compile`, calls go through
    `torch.compile` of the wrapped module (the first call of each input shape compiles: about a
    minute on a CPU). Attributes the wrapper does not have are read from the wrapped module.
    """

    def __init__(
        self,
        module: nn.Module,
        precision: str = "fp32",
        channels_last: bool = True,
        compile: bool = False,
    ) -> None:
        check_precision(precision, module_device(module))
        super().__init__()
        self.module = module
        self.precision = precision
        self.channels_last = channels_last
        module.eval()
        if channels_last:
            to_memory_format(module, torch.channels_last)
        # kept out of the module registry: the compiled wrapper shares the module's weights
        self.__dict__["_call"] = torch.compile(module) if compile else module
        super().train(False)

    def train(self, mode: bool = True) -> InferenceModule:
        """Ignore requests for training mode: an inference module stays in eval mode."""
        return super().train(False)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Call the wrapped module at the wrapper's precision; float32 outputs."""
        if self.channels_last:
            args = tuple(channels_last_input(a) for a in args)
            kwargs = {k: channels_last_input(v) for k, v in kwargs.items()}
        with torch.inference_mode(), autocast(self.precision, module_device(self.module)):
            outputs = self._call(*args, **kwargs)
        return to_float32(outputs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "module":
                raise
            return getattr(self.module, name)


def inference_model(
    model: nn.Module, precision: str = "fp32", channels_last: bool = True, compile: bool = False
) -> InferenceModule:
    """`model` ready for inference at `precision` ("fp32", "bf16" or "fp16"; see the module
    docstring): eval mode, the channels_last layout, autocast, float32 outputs; optionally
    compiled (`torch.compile`)."""
    return InferenceModule(model, precision, channels_last, compile)
