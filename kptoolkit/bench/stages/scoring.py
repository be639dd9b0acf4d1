"""A run's scores: the metrics of its reconstructions, and its parameters and inference speed,
measured once per checkpoint and evaluators and stored in its `bench-state.json`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from kptoolkit.bench.stages.data import first_frames
from kptoolkit.bench.stages.evaluation import Evaluation
from kptoolkit.bench.stages.reconstruction import suffixed
from kptoolkit.bench.stages.stage_cache import StageResult, cached_stage, file_key
from kptoolkit.bench.stages.timing import inference_parameters, ms_per_frame
from kptoolkit.config.schema import load_config
from kptoolkit.engine.checkpoints import load_run
from kptoolkit.metrics.base import VideoScores


def cached_scores(
    run_dir: Path,
    checkpoint: Path,
    control: str | None,
    evaluation: Evaluation,
    measure: Callable[[], dict[str, Any]],
    label: str,
    say: Callable[[str], None],
) -> StageResult:
    """A run's stored scores (of the protocol, or of one control) when they were measured on
    `checkpoint` under the current scoring settings, else those of `measure()`, stored; with
    the run's state."""
    key = evaluation.scores_key(checkpoint=file_key(checkpoint))
    stage = cached_stage(
        run_dir,
        suffixed("scores", control),
        lambda done: done["key"] == key,
        lambda state: {"key": key, **measure()},
    )
    if stage.cached:
        say(f"{label}: cached")
    return stage


def measure_control(
    run_dir: Path,
    control: str,
    evaluation: Evaluation,
    label: str,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """The metrics of a control's reconstruction (no parameters or timing: same model)."""
    config = load_config(run_dir / "config.yaml")
    png = run_dir / suffixed("reconstruction", control) / "png"
    return {"per_video": evaluation.score_folder(config, png, label, say)}


def measure_run(
    checkpoint: Path,
    png_dir: Path,
    dataset: Callable[[], Any],
    evaluation: Evaluation,
    *,
    device: torch.device,
    repeats: int,
    precision: str,
    label: str,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """The metrics of a run's reconstruction in `png_dir`, its parameters and its inference
    speed on the first test video of `dataset()`."""
    config, models = load_run(checkpoint)
    models.to(device)
    per_video = evaluation.score_folder(config, png_dir, label, say)
    frames, joints = first_frames(dataset(), config.eval.batch_size)
    speed = ms_per_frame(
        models,
        frames.to(device),
        repeats=repeats,
        joints=None if joints is None else torch.from_numpy(joints).to(device),
        precision=precision,
    )
    pooled = {k: VideoScores.from_json(v).value("frames") for k, v in per_video.items()}
    say(
        f"{label}: "
        + ", ".join(f"{k} {v:.4f}" for k, v in pooled.items())
        + f"; {speed:.1f} ms/frame"
    )
    return {
        "per_video": per_video,
        "params": inference_parameters(models),
        "ms_per_frame": speed,
        "timing": {"batch": int(frames.shape[0]), "device": str(device), "precision": precision},
    }
