"""The notebook API: build or load models, then animate or reconstruct frames held in memory.

    import kptoolkit
    models = kptoolkit.load_run("runs/synthetic-64/heatmap_sum+two_stage")
    video = kptoolkit.animate_frames(models, source, driving)   # (T,3,H,W) in [0, 1]

Every call goes through the same inference path as `kptoolkit reconstruct` / `animate`: the
masker computes both structures, its `driving_for_inference` applies (the perturbed-mask
baseline refines animation masks there), and the generator runs in eval mode, in the layout
and at the precision resolved for the device (`precision="auto"`; "fp32" for exact frames).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from kptoolkit.config.schema import ExperimentConfig
    from kptoolkit.experiment.build import Models

DEFAULT_BATCH = 16


def build(
    config: ExperimentConfig | str | Path | None = None,
    kp_checkpoint: str | Path | None = None,
    weights: str | Path | None = None,
) -> Models:
    """The models of an experiment (`config`: an `ExperimentConfig`, a YAML path, or None for
    the built-in default), planned once (`kptoolkit.experiment.plan`); the keypoint
    detector from `kp_checkpoint` (else `keypoints.checkpoint`). With `weights`, an official
    FOMM-family or kptoolkit checkpoint, its generator and every other network it holds are
    loaded strictly."""
    from kptoolkit.config.schema import ExperimentConfig, load_config
    from kptoolkit.experiment.build import build_models
    from kptoolkit.experiment.plan import plan_experiment
    from kptoolkit.utils.checkpoint_io import (
        CheckpointError,
        load_strict,
        model_state,
        read_checkpoint,
    )

    if config is None:
        config = ExperimentConfig()
    elif not isinstance(config, ExperimentConfig):
        config = load_config(config)
    detector = kp_checkpoint or weights
    models = build_models(plan_experiment(config, str(detector) if detector else None))
    if weights is not None:
        checkpoint = read_checkpoint(weights)
        for role, module in models.modules().items():
            if not module.state_dict():
                continue  # nothing to load (e.g. a masker without weights)
            try:
                state = model_state(checkpoint, role, str(weights), module)
            except CheckpointError:
                if role == "generator":
                    raise
                continue  # the detector then stays the one kp_checkpoint gave, ...
            load_strict(module, state, f"{role} of {weights}")
    return models


def load_run(path: str | Path) -> Models:
    """The models of a kptoolkit run: its folder (the latest checkpoint) or a checkpoint file,
    every network loaded (the keypoint detector included)."""
    from kptoolkit.engine.checkpoints import latest_checkpoint
    from kptoolkit.engine.checkpoints import load_run as load_checkpoint
    from kptoolkit.engine.prediction import InferenceError

    path = Path(path)
    if path.is_dir():
        found = latest_checkpoint(path / "checkpoints") or latest_checkpoint(path)
        if found is None:
            raise InferenceError(f"no checkpoint in {path} (nor in {path / 'checkpoints'})")
        path = found
    return load_checkpoint(path)[1]


def save_run(
    path: str | Path, models: Models, config: ExperimentConfig | None = None, step: int = 0
) -> Path:
    """Save `models` (built by `build(config)`; None: the built-in default) as a kptoolkit run
    folder that `load_run` and the `reconstruct` / `animate` commands read; returns the
    checkpoint's path."""
    from kptoolkit.config.schema import ExperimentConfig
    from kptoolkit.engine.checkpoints import save_run as save

    return save(path, config if config is not None else ExperimentConfig(), models, step)


def _frames(frames: torch.Tensor, what: str) -> torch.Tensor:
    if frames.dim() == 3:
        frames = frames[None]
    if frames.dim() != 4 or frames.shape[1] != 3:
        shape = tuple(frames.shape)
        raise ValueError(f"{what} must be (3,H,W) or (T,3,H,W) in [0, 1], got {shape}")
    return frames.detach().float()


def animate_frames(
    models: Models,
    source: torch.Tensor,
    driving: torch.Tensor,
    relative: bool = False,
    adapt_scale: bool = False,
    precision: str = "auto",
    batch_size: int = DEFAULT_BATCH,
) -> torch.Tensor:
    """`source` (3,H,W) animated by `driving` (T,3,H,W), both float in [0, 1]: (T,3,H,W) float
    frames on the CPU. `relative` moves the source by the driving keypoints' motion since the
    first driving frame (FOMM's relative mode; keypoint maskers only)."""
    return _run(models, source, driving, "animation", relative, adapt_scale, precision, batch_size)


def reconstruct_video(
    models: Models, frames: torch.Tensor, precision: str = "auto", batch_size: int = DEFAULT_BATCH
) -> torch.Tensor:
    """Every frame of a video (T,3,H,W) regenerated from its first frame, driven by itself (the
    reconstruction protocol of the benchmarks): (T,3,H,W) float frames on the CPU."""
    frames = _frames(frames, "frames")
    return _run(models, frames[0], frames, "reconstruction", False, False, precision, batch_size)


def _run(
    models: Models,
    source: torch.Tensor,
    driving: torch.Tensor,
    task: str,
    relative: bool,
    adapt_scale: bool,
    precision: str,
    batch_size: int,
) -> torch.Tensor:
    from kptoolkit.engine.prediction import (
        RelativeMotion,
        check_relative,
        compute_structure,
        first_of,
        generate,
        inference_models,
        model_device,
    )

    source, driving = _frames(source, "source")[:1], _frames(driving, "driving")
    if relative:
        check_relative(models)
    device = model_device(models)
    outputs = []
    with inference_models(models, precision), torch.inference_mode():
        source = source.to(device)
        source_structure = compute_structure(models, source)
        motion = None
        for start in range(0, driving.shape[0], batch_size):
            batch = driving[start : start + batch_size].to(device)
            structure = compute_structure(models, batch)
            if relative and motion is None:
                motion = RelativeMotion(first_of(structure), adapt_scale)
            predicted = generate(
                models, source, source_structure, batch, task, motion, driving_structure=structure
            )
            outputs.append(predicted.float().cpu())
    return torch.cat(outputs)
