"""Numerical precision and memory layout: one resolver for training and inference, and the
inference wrapper.

`fp32` runs the networks as they are (bitwise equal to a plain call). `bf16` and `fp16` run them
under `torch.autocast`: convolutions and matrix products in the lower precision, everything
returned cast back to float32. On the CPU only `bf16` is offered (float16 convolutions are slow
there); on CUDA both are.

`auto` (the default everywhere) is decided from the device by `resolve_numerics`, once per run:

- CUDA: bf16 where the GPU has bfloat16 arithmetic (compute capability 8.0 and up), else fp16
  (training then scales its gradients);
- CPU: bf16 only where oneDNN runs bfloat16 natively (AVX-512 BF16, AMX); elsewhere bfloat16
  is emulated, 4-11x slower than fp32 (FACTS: a 2-core AVX2 EPYC), so fp32;
- any other device: fp32.

The layout (`channels_last`) follows the same rule: `auto` picks it where it was measured faster
(`CHANNELS_LAST_MEASURED`), and explicit values (`fp32`, `bf16`, `true`, `false`) always win.
`inference_model` wraps one network (a generator, a masker, a detector) so that it is called
like the original, in eval mode, in the resolved layout and at the resolved precision.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from typing import Any

import attrs
import torch
from torch import nn

from kptoolkit.config.schema import AUTO, PRECISIONS, ExperimentConfig
from kptoolkit.errors import KptoolkitError
from kptoolkit.nn.video_kernels import to_memory_format
from kptoolkit.runtime.hardware import Hardware, describe

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class PrecisionError(KptoolkitError):
    """A precision that is unknown or that the device cannot run."""


def _check_known(precision: str) -> None:
    if precision not in PRECISIONS:
        raise PrecisionError(
            f"precision must be one of {', '.join((AUTO, *PRECISIONS))}, got {precision!r}"
        )


def _check_runs_on(precision: str, device_type: str) -> None:
    _check_known(precision)
    if precision == "fp16" and device_type != "cuda":
        raise PrecisionError(
            f"fp16 runs on CUDA only (this device is {device_type}); use auto, bf16 or fp32"
        )


def check_precision(precision: str, device: torch.device | str = "cpu") -> None:
    """Raise a `PrecisionError` unless `precision` is one of `PRECISIONS` and runs on `device`
    (a resolved precision: `auto` is resolved first, by `resolve_numerics`)."""
    device_type = torch.device(device).type
    _check_runs_on(precision, device_type)
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


# `auto`'s layout by (device type, precision). CPU: channels_last, measured faster than the
# contiguous layout for every default row, training and inference, in fp32 and bf16, with and
# without native bfloat16 (`benchmarks/scripts/bench_numerics.py`, docs/performance.md). CUDA: not
# measured yet; channels_last, the layout the code used on every device before `auto`.
# Anything not listed runs contiguous.
CHANNELS_LAST_MEASURED: dict[tuple[str, str], bool] = {
    ("cpu", "fp32"): True,
    ("cpu", "bf16"): True,
    ("cuda", "fp32"): True,
    ("cuda", "bf16"): True,
    ("cuda", "fp16"): True,
}


def resolve_precision(requested: str, hardware: Hardware) -> str:
    """The precision `requested` means on `hardware`: itself when explicit (checked against the
    device), else the module docstring's rule."""
    if requested != AUTO:
        _check_runs_on(requested, hardware.device_type)
        return requested
    if hardware.device_type == "cuda":
        return "bf16" if hardware.native_bf16 else "fp16"
    if hardware.device_type == "cpu" and hardware.native_bf16:
        return "bf16"
    return "fp32"


def resolve_channels_last(requested: bool | str, hardware: Hardware, precision: str) -> bool:
    """Whether to run in the channels_last layout: `requested` when it is a bool, else what was
    measured faster for the device and `precision` (`CHANNELS_LAST_MEASURED`)."""
    if isinstance(requested, bool):
        return requested
    if requested != AUTO:
        raise PrecisionError(f"channels_last must be true, false or auto, got {requested!r}")
    return CHANNELS_LAST_MEASURED.get((hardware.device_type, precision), False)


@attrs.frozen
class Numerics:
    """A run's precision and layout as resolved for its hardware, and what was asked for."""

    precision: str  # fp32, bf16 or fp16
    channels_last: bool
    hardware: Hardware
    requested_precision: str = AUTO
    requested_channels_last: bool | str = AUTO

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The autocast dtype (None for fp32)."""
        return autocast_dtype(self.precision)

    @property
    def memory_format(self) -> torch.memory_format:
        """`torch.channels_last` or `torch.contiguous_format`."""
        return torch.channels_last if self.channels_last else torch.contiguous_format

    @property
    def scales_gradients(self) -> bool:
        """Whether training needs a gradient scaler (float16 on CUDA)."""
        return self.precision == "fp16" and self.hardware.device_type == "cuda"

    def describe(self) -> str:
        """'bf16, channels_last (auto: native bfloat16 on AVX512)' and the like."""
        layout = "channels_last" if self.channels_last else "contiguous"
        chosen = []
        if self.requested_precision == AUTO:
            bf16 = "native bfloat16" if self.hardware.native_bf16 else "no native bfloat16"
            chosen.append(f"auto: {bf16} on {self.hardware.capability}")
        if self.requested_channels_last == AUTO:
            chosen.append("layout auto")
        why = f" ({'; '.join(chosen)})" if chosen else ""
        return f"{self.precision}, {layout}{why}"

    def warning(self) -> str | None:
        """A line for the user when an explicit bf16 runs where bfloat16 is emulated."""
        if self.precision != "bf16" or self.hardware.native_bf16:
            return None
        where = "this CPU" if self.hardware.device_type == "cpu" else "this GPU"
        return (
            f"bf16 was asked for, but {where} ({self.hardware.capability}) has no native "
            "bfloat16: it is emulated and can run several times slower than fp32 (auto picks "
            "fp32 here)"
        )

    def record(self) -> dict[str, Any]:
        """Plain data for a run's config and results: the resolved values, what was asked, and
        the hardware (`Hardware`'s fields)."""
        return {
            "precision": self.precision,
            "channels_last": self.channels_last,
            "requested_precision": self.requested_precision,
            "requested_channels_last": self.requested_channels_last,
            **attrs.asdict(self.hardware),
        }


def resolve_numerics(
    precision: str = AUTO,
    channels_last: bool | str = AUTO,
    device: torch.device | str = "cpu",
    hardware: Hardware | None = None,
) -> Numerics:
    """The one place precision and layout are decided: `auto` values resolved for `device`
    (probed once here unless `hardware` is given), explicit ones checked and kept."""
    hardware = hardware or describe(device)
    resolved = resolve_precision(precision, hardware)
    return Numerics(
        precision=resolved,
        channels_last=resolve_channels_last(channels_last, hardware, resolved),
        hardware=hardware,
        requested_precision=precision,
        requested_channels_last=channels_last,
    )


def resolve_training_numerics(
    config: ExperimentConfig, device: torch.device | str, hardware: Hardware | None = None
) -> Numerics:
    """Resolve `config.train`'s precision and layout for `device` and write the result into
    `config` (`write_numerics`)."""
    train = config.train
    numerics = resolve_numerics(train.precision, train.channels_last, device, hardware)
    write_numerics(config, numerics)
    return numerics


def write_numerics(config: ExperimentConfig, numerics: Numerics) -> None:
    """Write resolved `numerics` into `config`: the values in `train.precision` /
    `train.channels_last` (so a saved config trains the same way again) and the `runtime`
    record (the hardware, and what was asked for when the config did not say already)."""
    train = config.train
    earlier = config.runtime or {}  # a resolution before this one (the bench's, a run's)
    train.precision = numerics.precision
    train.channels_last = numerics.channels_last
    record = numerics.record()
    # values an earlier resolution wrote (the bench resolves before its runs do) keep what was
    # asked for then
    if (earlier.get("precision"), earlier.get("channels_last")) == (
        numerics.precision,
        numerics.channels_last,
    ):
        for key in ("requested_precision", "requested_channels_last"):
            record[key] = earlier.get(key, record[key])
    config.runtime = record


# what a bench scores when no inference precision is given: exact reconstructions, so that a
# table's scores depend on how its rows were trained and not on the inference precision too
SCORING_DEFAULT = "fp32"


def scoring_precision(requested: str, device: torch.device | str = "cpu") -> str:
    """The precision the bench reconstructs its test videos at: `requested`, checked against
    the device, with `auto` meaning `SCORING_DEFAULT` (fp32, never slower than fp32)."""
    if requested == AUTO:
        return SCORING_DEFAULT
    check_precision(requested, device)
    return requested


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

    The precision and layout are resolved once, for the module's device (`resolve_numerics`;
    `numerics` holds the result). The wrapped module is put in eval mode (and kept there) and,
    where the layout is channels_last, in that layout; every call runs under
    `torch.inference_mode()` and the precision's autocast, with 4-D tensor arguments in the
    module's layout, and returns the original's outputs with lower-precision tensors cast to
    float32. With `compile`, calls go through `torch.compile` of the wrapped module (the first
    call of each input shape compiles: about a minute on a CPU). Attributes the wrapper does not
    have are read from the wrapped module.
    """

    def __init__(
        self,
        module: nn.Module,
        precision: str = AUTO,
        channels_last: bool | str = AUTO,
        compile: bool = False,
    ) -> None:
        numerics = resolve_numerics(precision, channels_last, module_device(module))
        check_precision(numerics.precision, module_device(module))
        super().__init__()
        self.module = module
        self.numerics = numerics
        self.precision = numerics.precision
        self.channels_last = numerics.channels_last
        module.eval()
        if self.channels_last:
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
    model: nn.Module,
    precision: str = AUTO,
    channels_last: bool | str = AUTO,
    compile: bool = False,
) -> InferenceModule:
    """`model` ready for inference at `precision` ("auto", "fp32", "bf16" or "fp16"; see the
    module docstring): eval mode, the resolved layout, autocast, float32 outputs; optionally
    compiled (`torch.compile`)."""
    return InferenceModule(model, precision, channels_last, compile)
