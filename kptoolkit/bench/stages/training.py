"""A row's training run: a folder holding another config is refused, a finished run reused and
an interrupted one resumed from its last checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from kptoolkit.bench.stages.stage_cache import cached_stage, read_state
from kptoolkit.config.schema import (
    INFERENCE_KEYS,
    LOADING_KEYS,
    SCORING_KEYS,
    ExperimentConfig,
)
from kptoolkit.engine.checkpoints import list_checkpoints, numerics_hint, stored_differences
from kptoolkit.engine.distributed import DistContext
from kptoolkit.engine.trainer import Trainer
from kptoolkit.errors import BenchError
from kptoolkit.experiment.components import PRESET_KEYS
from kptoolkit.experiment.plan import Plan

# what a cached row may differ in: how it is scored, inference settings, how its batches were
# loaded, the names of the presets that gave its written-out values, and where its detector
# file lies (a moved bench folder or cache still matches: the file is compared by its sha256)
ROW_UNTRAINED_KEYS = (
    *SCORING_KEYS,
    *INFERENCE_KEYS,
    *LOADING_KEYS,
    *PRESET_KEYS,
    "keypoints.checkpoint",
)


def check_same_config(run_dir: Path, config: ExperimentConfig) -> None:
    """Refuse (BenchError) a run folder whose run was trained with other settings
    (`ROW_UNTRAINED_KEYS` aside)."""
    differences = stored_differences(run_dir, config, ROW_UNTRAINED_KEYS)
    if differences:
        raise BenchError(
            f"{run_dir} holds a run with other settings: {differences}. Use another --out, "
            f"or delete that folder to retrain it (nothing was changed){numerics_hint(differences)}"
        )


def run_is_trained(run_dir: Path) -> bool:
    """Whether the bench recorded a finished training in `run_dir` whose checkpoint is there."""
    done = read_state(run_dir).get("train")
    return bool(done) and _checkpoint_exists(run_dir, done)


def _checkpoint_exists(run_dir: Path, done: dict[str, Any]) -> bool:
    return (run_dir / "checkpoints" / done["checkpoint"]).is_file()


def train_run(
    run_dir: Path,
    plan: Plan,
    label: str,
    device: torch.device,
    progress: bool,
    say: Callable[[str], None],
    runs_at_once: int = 1,
) -> dict[str, Any]:
    """Train `plan` in `run_dir` (or reuse / resume its run); returns its training record
    (steps, checkpoint, seconds, whether the time is extrapolated, and how it was trained:
    torch threads and how many runs trained at once, over its segments)."""
    check_same_config(run_dir, plan.config)
    threads = plan.config.train.threads or torch.get_num_threads()

    def train(state: dict[str, Any]) -> dict[str, Any]:
        existing = list_checkpoints(run_dir / "checkpoints")
        start = existing[-1][0] if existing else 0
        how = f"resuming at step {start}" if existing else "from scratch"
        say(f"{label}: training {how} -> {run_dir}")
        trainer = Trainer(
            plan,
            run_dir,
            resume=bool(existing),
            context=DistContext(device=device),
            progress=progress,
        )
        result = trainer.train()
        if result.checkpoint is None:
            raise BenchError(f"{label}: training saved no checkpoint in {run_dir}")
        segment = {"from_step": start, "to_step": result.steps, "seconds": result.seconds}
        segment |= {"threads": threads, "runs_at_once": runs_at_once}
        segments = [*state.get("train_segments", []), segment]
        covered = sum(s["to_step"] - s["from_step"] for s in segments)
        timed = sum(s["seconds"] for s in segments)
        seconds = timed * result.steps / covered if covered else timed
        state["train_segments"] = segments
        say(f"{label}: {result.describe()} in {result.seconds / 60:.1f} min")
        return {
            "steps": result.steps,
            "checkpoint": result.checkpoint.name,
            "seconds": seconds,
            "extrapolated": covered != result.steps,
            "threads": threads,
            "runs_at_once": sorted({s.get("runs_at_once", 1) for s in segments}),
        }

    # a new checkpoint makes every later stage stale: only the training segments stay
    stage = cached_stage(
        run_dir,
        "train",
        lambda done: _checkpoint_exists(run_dir, done),
        train,
        keep=("train_segments",),
    )
    done = stage.record
    if stage.cached:
        say(f"{label}: cached ({done['steps']} steps, {done['seconds'] / 60:.1f} min of training)")
    return done
