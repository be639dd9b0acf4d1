"""Per-row pictures: a reconstruction sample GIF and the training loss curves (redrawn only when
the run's checkpoint changed)."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kptoolkit.bench.stages.data import first_frames
from kptoolkit.bench.stages.stage_cache import cached_stage, file_key
from kptoolkit.data.video_io import write_gif
from kptoolkit.engine.checkpoints import load_run
from kptoolkit.engine.prediction import expand_structure, inference_models
from kptoolkit.engine.reconstruction import reconstruction_batches
from kptoolkit.engine.visualize import comparison_columns, grid_image
from kptoolkit.experiment.build import Models

NOT_PLOTTED = frozenset({"step", "epoch", "lr"})
SAMPLE_FRAMES = 32


def sample_frames(
    models: Models,
    frames: list[torch.Tensor],
    batch_size: int = 16,
    joints: np.ndarray | None = None,
    precision: str = "auto",
) -> list[np.ndarray]:
    """One picture per driving frame: source | driving | source mask | driving mask | prediction.

    Frame 0 is the source, as in reconstruction. Structures without a mask (FOMM's keypoints)
    are drawn as keypoints; maskers with no structure image (X2Face's frames) show none.
    `joints` (T, J, 2) are the frames' ground-truth joints, for maskers that draw them.
    `precision`: the inference precision (`kptoolkit.runtime.precision`).
    """
    pictures = []
    with inference_models(models, precision):
        for step in reconstruction_batches(models, frames, batch_size, joints=joints):
            count = step.driving.shape[0]
            columns = comparison_columns(
                step.source.expand(count, -1, -1, -1),
                step.driving,
                expand_structure(step.source_structure, count),
                step.driving_structure,
                step.prediction,
            )
            for index in range(count):
                pictures.append(grid_image([c[index : index + 1] for c in columns], max_rows=1))
    return pictures


def write_sample_gif(
    models: Models,
    frames: list[torch.Tensor],
    path: Path,
    fps: float = 8.0,
    joints: np.ndarray | None = None,
    precision: str = "auto",
) -> Path:
    """Write `sample_frames` (at `precision`) as a looping GIF."""
    write_gif(sample_frames(models, frames, joints=joints, precision=precision), path, fps=fps)
    return path


def read_loss_log(path: Path) -> dict[str, list[tuple[float, float]]]:
    """(step, value) series per loss column of a run's `losses.csv`."""
    series: dict[str, list[tuple[float, float]]] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            step = float(row["step"])
            for key, text in row.items():
                if key in NOT_PLOTTED or not text:
                    continue
                value = float(text)
                if math.isfinite(value):
                    series.setdefault(key, []).append((step, value))
    return series


def write_loss_curves(log_path: Path, path: Path, title: str) -> Path:
    """Plot every logged loss term against the step (log scale), total in bold, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    series = read_loss_log(log_path)
    figure, axes = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    try:
        for key, points in sorted(series.items(), key=lambda item: item[0] != "total"):
            steps, values = zip(*points, strict=True)
            bold = key == "total"
            axes.plot(steps, values, label=key, linewidth=2.0 if bold else 1.0)
        if any(v > 0 for points in series.values() for _, v in points):
            axes.set_yscale("log")
        axes.set_xlabel("step")
        axes.set_ylabel("loss (weighted)")
        axes.set_title(title)
        axes.grid(True, alpha=0.3)
        if series:
            axes.legend(fontsize=7)
        figure.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path)
    finally:
        plt.close(figure)
    return path


def write_run_figures(
    run_dir: Path,
    checkpoint: Path,
    dataset: Callable[[], Any],
    folder: Path,
    slug: str,
    title: str,
    device: torch.device,
    precision: str = "auto",
) -> list[Path]:
    """`<slug>-sample.gif` and `<slug>-losses.png` in `folder` for a run, drawn with its
    `checkpoint` on the first test video of `dataset()` at `precision` (redrawn only when it
    changed)."""
    gif = folder / f"{slug}-sample.gif"
    curves = folder / f"{slug}-losses.png"
    key = file_key(checkpoint)

    def draw(state: dict[str, Any]) -> dict[str, Any]:
        _, models = load_run(checkpoint)
        models.to(device)
        frames, joints = first_frames(dataset(), SAMPLE_FRAMES)
        write_sample_gif(models, list(frames), gif, joints=joints, precision=precision)
        write_loss_curves(run_dir / "losses.csv", curves, title)
        return key

    cached_stage(
        run_dir, "figures", lambda done: done == key and gif.is_file() and curves.is_file(), draw
    )
    return [gif, curves]
