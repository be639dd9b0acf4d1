"""What a trained model costs at inference: parameter count and milliseconds per frame."""

from __future__ import annotations

import statistics
import time

import torch

from kptoolkit.engine.prediction import compute_structure, first_of, generate, inference_models
from kptoolkit.experiment.build import Models


def inference_parameters(models: Models) -> int:
    """Parameters of every network used to generate a frame (masker, detector, generator)."""
    seen: set[int] = set()
    total = 0
    for module in (models.masker, models.detector, models.generator):
        if module is None:
            continue
        for parameter in module.parameters():
            if id(parameter) not in seen:
                seen.add(id(parameter))
                total += parameter.numel()
    return total


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def ms_per_frame(
    models: Models,
    frames: torch.Tensor,
    repeats: int = 10,
    warmup: int = 2,
    joints: torch.Tensor | None = None,
    precision: str = "auto",
) -> float:
    """Median milliseconds per frame of reconstruction inference on a batch of test frames.

    One pass = the driving structures of the batch plus the generated frames, with the source
    (frame 0) structure computed once beforehand, as in reconstruction. `frames` (B,3,H,W) must
    be on the models' device; `joints` (B,J,2) are their ground-truth joints, for maskers that
    draw them. `precision`: auto, fp32, bf16 or fp16 (`kptoolkit.runtime.precision`).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    device = frames.device
    times = []
    with inference_models(models, precision), torch.inference_mode():
        source = frames[:1]
        source_joints = joints[:1] if joints is not None else None
        source_structure = first_of(compute_structure(models, source, source_joints))
        for index in range(warmup + repeats):
            _synchronize(device)
            started = time.perf_counter()
            driving_structure = compute_structure(models, frames, joints)
            generate(
                models,
                source,
                source_structure,
                frames,
                "reconstruction",
                driving_structure=driving_structure,
            )
            _synchronize(device)
            if index >= warmup:
                times.append(time.perf_counter() - started)
    return 1000.0 * statistics.median(times) / frames.shape[0]
