"""Prediction: models prepared for inference, and frames generated from a source and a driving
structure (the path shared by reconstruction, animation, the bench and the notebook API).

Networks run in eval mode under `torch.inference_mode()`, at the precision and in the layout
that `kptoolkit.runtime.precision.resolve_numerics` gives (`precision`: auto, fp32 exact, or
bf16 / fp16 autocast; `auto` is bf16 on CPUs with native bfloat16, fp32 on the others).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, TypeVar

import attrs
import torch
from torch import nn

from kptoolkit.config.schema import AUTO
from kptoolkit.errors import CompatibilityError, KptoolkitError
from kptoolkit.keypoints.relative import relative_structure
from kptoolkit.maskers.base import Masker
from kptoolkit.nn.component import hook
from kptoolkit.nn.video_kernels import to_memory_format
from kptoolkit.runtime.precision import (
    Numerics,
    autocast,
    channels_last_input,
    module_device,
    resolve_numerics,
    to_float32,
)
from kptoolkit.structure import STRUCTURE_FIELDS, Structure

if TYPE_CHECKING:
    from kptoolkit.experiment.build import Models

T = TypeVar("T")
TASKS = ("reconstruction", "animation")


class InferenceError(KptoolkitError):
    """Reconstruction or animation cannot run with what it was given."""


# -- relative motion ---------------------------------------------------------------------------


@attrs.frozen
class RelativeMotion:
    """Relative animation settings: the first driving frame's structure (batch 1), scale rule."""

    first: Structure
    adapt_scale: bool = False


def for_inference(module: nn.Module) -> nn.Module:
    """Eval mode in the channels_last layout, the faster one for CPU inference (measured).

    Feed inputs with `.contiguous(memory_format=torch.channels_last)` and run under
    `torch.inference_mode()`.
    """
    return to_memory_format(module.eval(), torch.channels_last)


def check_relative(models: Models) -> None:
    """Raise a `CompatibilityError` unless the masker supports relative motion."""
    if not hook(models.masker, "supports_relative", Masker):
        raise CompatibilityError(
            f"relative animation needs a masker that supports relative motion, and masker "
            f"'{models.masker_name}' does not (it draws its structure from pixels, not "
            "keypoints); animate in absolute mode (without --relative) or use a model trained "
            "with a relative-capable masker such as gaussian_circles or fomm_keypoints"
        )


# -- models and tensors ------------------------------------------------------------------------


def _inference_modules(models: Models) -> list[nn.Module]:
    # the detector wrapper itself (not its inner module): a FrozenDetector stays in eval mode
    return [m for m in (models.generator, models.masker, models.detector) if m is not None]


def model_device(models: Models) -> torch.device:
    """The device of the generator's weights (where inputs must go)."""
    return module_device(models.generator)


def _is_channels_last(module: nn.Module) -> bool:
    weights = [p for p in module.parameters() if p.dim() == 4]
    return bool(weights) and all(
        p.is_contiguous(memory_format=torch.channels_last) for p in weights
    )


def inference_numerics(
    models: Models, precision: str | Numerics = AUTO, channels_last: bool | str = AUTO
) -> Numerics:
    """The precision and layout inference runs at on the models' device (`resolve_numerics`);
    an already resolved `Numerics` as it is."""
    if isinstance(precision, Numerics):
        return precision
    return resolve_numerics(precision, channels_last, model_device(models))


@contextlib.contextmanager
def inference_models(
    models: Models,
    precision: str | Numerics = AUTO,
    compile: bool = False,
    channels_last: bool | str = AUTO,
) -> Iterator[Models]:
    """Eval mode, the resolved layout and the resolved precision's autocast for the duration
    (`inference_numerics`); restored on exit. With `compile`, the masker and the generator are
    called through `torch.compile` meanwhile (each new input shape compiles first: about a
    minute on a CPU).

    Training modes come back as they were, and modules that were not channels_last before go
    back to the contiguous layout, so a training loop can call `reconstruct` between epochs.
    Structures and generated frames come back in float32 whatever the precision.
    """
    numerics = inference_numerics(models, precision, channels_last)
    device = model_device(models)
    modules = _inference_modules(models)
    saved = [(m, {s: s.training for s in m.modules()}, _is_channels_last(m)) for m in modules]
    for module in modules:
        if numerics.channels_last:
            for_inference(module)
        else:
            module.eval()
    masker, generator = models.masker, models.generator
    try:
        if compile:
            models.masker, models.generator = torch.compile(masker), torch.compile(generator)
        with autocast(numerics.precision, device):
            yield models
    finally:
        models.masker, models.generator = masker, generator
        for module, training, was_channels_last in saved:
            for sub, mode in training.items():
                sub.training = mode
            if not was_channels_last:
                to_memory_format(module, torch.contiguous_format)


def to_model_input(frames: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """(B,3,H,W) frames on `device` in the channels_last layout."""
    return frames.to(device).contiguous(memory_format=torch.channels_last)


def quantize(frames: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) float frames in [0,1] -> (B,H,W,3) uint8 on the CPU, rounding to nearest."""
    return (
        frames.detach().clamp(0.0, 1.0).mul(255.0).add(0.5).to(torch.uint8).permute(0, 2, 3, 1)
    ).cpu()


IMAGE_FIELDS = frozenset({"mask", "frame"})  # (B,C,h,w) maps: channels_last like the frames


def _map_structure(
    structure: Structure, fn: Callable[[torch.Tensor, bool], torch.Tensor]
) -> Structure:
    return Structure(
        **{
            name: None if (t := getattr(structure, name)) is None else fn(t, name in IMAGE_FIELDS)
            for name in STRUCTURE_FIELDS
        }
    )


_layout = channels_last_input  # (B,C,H,W) tensors in channels_last; others unchanged


def first_of(structure: Structure) -> Structure:
    """Sample 0 of a batched structure, keeping the batch dimension (batch 1), as a copy."""
    return _map_structure(structure, lambda t, _: t[:1].clone())


def expand_structure(structure: Structure, batch: int) -> Structure:
    """A batch-1 structure repeated to `batch` samples (masks and frames in channels_last)."""
    if _batch_of(structure) == batch:
        return structure

    def repeat(tensor: torch.Tensor, image: bool) -> torch.Tensor:
        repeated = tensor.expand(batch, *tensor.shape[1:]).contiguous()
        return _layout(repeated) if image else repeated

    return _map_structure(structure, repeat)


def _batch_of(structure: Structure) -> int | None:
    for name in STRUCTURE_FIELDS:
        tensor = getattr(structure, name)
        if tensor is not None:
            return int(tensor.shape[0])
    return None


def expand_frames(frames: torch.Tensor, batch: int) -> torch.Tensor:
    """Batch-1 (1,3,H,W) frames repeated to `batch` samples, channels_last (a full batch as is)."""
    if frames.shape[0] == batch:
        return frames
    return _layout(frames.expand(batch, *frames.shape[1:]).contiguous())


def needs_groundtruth(models: Models) -> bool:
    """True when the masker is drawn from ground-truth joints (the oracle)."""
    return bool(hook(models.masker, "needs_groundtruth", Masker))


@torch.inference_mode()
def compute_structure(
    models: Models, frames: torch.Tensor, joints: torch.Tensor | None = None
) -> Structure:
    """The masker's structure of (B,3,H,W) frames (already on the models' device); `joints`
    (B, J, 2) are the frames' ground-truth joints, for maskers that draw them."""
    if needs_groundtruth(models):
        return to_float32(models.masker(_layout(frames), joints=joints))
    return to_float32(models.masker(_layout(frames)))


@torch.inference_mode()
def generate(
    models: Models,
    source: torch.Tensor,
    source_structure: Structure,
    driving: torch.Tensor,
    task: str = "animation",
    relative: RelativeMotion | None = None,
    driving_structure: Structure | None = None,
    output: str = "prediction",
) -> torch.Tensor:
    """Generate one frame per driving frame: (B,3,H,W) predictions in [0, 1].

    `source` (1 or B frames) and its structure are repeated to the driving batch. The driving
    structure is computed unless given; with `relative`, it is re-expressed relative to the
    source (`relative_structure`); then the masker's `driving_for_inference(..., task)` gives
    what the generator sees (e.g. the perturbed-mask baseline refines it for animation only).
    `output` names the generator output returned (e.g. FOMM's "deformed": the source warped by
    the flow alone). Call with models prepared by `inference_models`.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    driving = _layout(driving)
    batch = driving.shape[0]
    if driving_structure is None:
        driving_structure = compute_structure(models, driving)
    source = expand_frames(_layout(source), batch)
    source_structure = expand_structure(source_structure, batch)
    if relative is not None:
        with torch.autocast(driving.device.type, enabled=False):  # keypoint arithmetic: fp32
            driving_structure = relative_structure(
                models.masker,
                source_structure,
                driving_structure,
                expand_structure(relative.first, batch),
                adapt_scale=relative.adapt_scale,
            )
    driving_structure = models.masker.driving_for_inference(
        source, source_structure, driving_structure, task=task
    )
    outputs = models.generator(source, source_structure, driving_structure)
    if output not in outputs:
        raise InferenceError(
            f"generator {type(models.generator).__name__} has no output {output!r} "
            f"(it gives {', '.join(sorted(outputs))})"
        )
    return to_float32(outputs[output])


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of `size` items (the last may be shorter), consumed lazily."""
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch
