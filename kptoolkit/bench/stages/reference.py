"""The no-motion reference: every test frame 'predicted' as its video's frame 0.

Any model that learned motion should beat it; on data with little motion it is hard to beat,
and the table should say so.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from kptoolkit.bench.report.rows import REFERENCE_LABEL, PerVideo
from kptoolkit.bench.stages.evaluation import Evaluation
from kptoolkit.bench.stages.stage_cache import cached_stage
from kptoolkit.config.schema import ExperimentConfig
from kptoolkit.engine.prediction import quantize
from kptoolkit.engine.reconstruction import write_stacked_png

REFERENCE_DIR = "reference-source-frame"


def reference_key(config: ExperimentConfig) -> dict[str, Any]:
    """What the reference's frames depend on: the dataset and how many test videos."""
    return {
        "dataset": config.data.dataset,
        "root": config.data.root,
        "frame_size": config.data.frame_size,
        "max_videos": config.eval.max_videos,
    }


def reconstruct_reference(
    folder: Path, config: ExperimentConfig, dataset: Any, say: Callable[[str], None]
) -> None:
    """Write the reference's PNGs into `folder` (once per `reference_key`)."""
    key = reference_key(config)

    def repeat_first_frames(state: dict[str, Any]) -> dict[str, Any]:
        shutil.rmtree(folder / "png", ignore_errors=True)
        videos = dataset.videos[: config.eval.max_videos]
        for video in videos:
            frames = list(dataset.iter_video(video))
            if not frames:
                continue
            first = quantize(frames[0][None]).numpy()
            repeated = np.repeat(first, len(frames), axis=0)
            write_stacked_png([repeated], folder / "png" / f"{video.name}.png")
        say(f"{REFERENCE_LABEL}: {len(videos)} videos")
        return key

    # new frames make every other record (the scores) stale
    stage = cached_stage(
        folder, "reconstruction", lambda done: done == key, repeat_first_frames, keep=()
    )
    if stage.cached:
        say(f"{REFERENCE_LABEL}: cached")


def score_reference(
    folder: Path, config: ExperimentConfig, evaluation: Evaluation, say: Callable[[str], None]
) -> PerVideo:
    """The reference's per-video scores, measured once per reconstruction and evaluators
    (`reconstruct_reference` has run)."""
    key = evaluation.scores_key(reconstruction=reference_key(config))

    def measure(state: dict[str, Any]) -> dict[str, Any]:
        per_video = evaluation.score_folder(config, folder / "png", REFERENCE_LABEL, say)
        return {"key": key, "per_video": per_video}

    stage = cached_stage(folder, "scores", lambda done: done["key"] == key, measure)
    if stage.cached:
        say(f"{REFERENCE_LABEL}: cached")
    return stage.record["per_video"]
