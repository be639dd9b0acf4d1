"""Scoring generated videos against real ones, folder against folder, with kptoolkit metrics.

Videos are paired by name (`png/<name>.png` from `kptoolkit reconstruct` pairs with the real
`<name>` frame folder or `<name>.mp4`). Frames stream in batches; per-frame values are averaged
per video, then over videos (the evaluation protocol).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from kptoolkit.data.datasets import frames_to_tensor
from kptoolkit.data.layout import VideoEntry
from kptoolkit.data.video_io import iter_frames, video_kind
from kptoolkit.errors import KptoolkitError
from kptoolkit.metrics.base import FramePairs, Metric


class EvaluationError(KptoolkitError):
    """The folders cannot be compared (no common videos, different frame sizes, ...)."""


def videos_by_name(folder: str | Path) -> dict[str, Path]:
    """Every video in a folder (frame folders, stacked images, video files) by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EvaluationError(f"not a folder: {folder}")
    found = {}
    for path in sorted(folder.iterdir()):
        kind = video_kind(path)
        if kind is not None and not path.name.startswith("."):
            found[VideoEntry(path, kind, "").name] = path
    return found


def _pairs(real: Path, fake: Path, batch: int, frame_width: int | None) -> Iterator[tuple]:
    with (
        contextlib.closing(iter_frames(real, frame_width)) as real_frames,
        contextlib.closing(iter_frames(fake, frame_width)) as fake_frames,
    ):
        both = zip(real_frames, fake_frames, strict=False)
        while chunk := list(itertools.islice(both, batch)):
            yield [r for r, _ in chunk], [f for _, f in chunk]


def evaluate_folders(
    real_dir: str | Path,
    fake_dir: str | Path,
    metrics: dict[str, Metric],
    evaluators: Sequence[torch.nn.Module] = (),
    batch_size: int = 32,
    frame_width: int | None = None,
    progress: bool = True,
) -> tuple[dict[str, float], list[str]]:
    """(score per metric, names of real videos with no generated counterpart)."""
    real, fake = videos_by_name(real_dir), videos_by_name(fake_dir)
    common = sorted(set(real) & set(fake))
    if not common:
        raise EvaluationError(
            f"no video names in common between {real_dir} ({len(real)} videos) and {fake_dir} "
            f"({len(fake)} videos)"
        )
    pose = next((e for e in evaluators if e.kind == "pose"), None)
    identity = next((e for e in evaluators if e.kind == "identity"), None)
    for name, metric in metrics.items():
        missing = {"pose": pose, "identity": identity}
        for need in metric.requires:
            if missing[need] is None:
                raise EvaluationError(f"metric '{name}' needs a {need} evaluator (--evaluator)")
    for name in tqdm(common, desc="scoring", unit="video", disable=not progress):
        for real_frames, fake_frames in _pairs(real[name], fake[name], batch_size, frame_width):
            real_t, fake_t = (
                frames_to_tensor(np.stack(real_frames)),
                frames_to_tensor(np.stack(fake_frames)),
            )
            if real_t.shape != fake_t.shape:
                raise EvaluationError(
                    f"{name}: real frames are {tuple(real_t.shape[-2:])}, generated ones "
                    f"{tuple(fake_t.shape[-2:])}; give --frame-width for stacked images"
                )
            extra = {}
            if pose is not None:
                extra["real_keypoints"] = pose.keypoints(real_t)
                extra["fake_keypoints"] = pose.keypoints(fake_t)
            if identity is not None:
                extra["real_embeddings"] = identity.embeddings(real_t)
                extra["fake_embeddings"] = identity.embeddings(fake_t)
            pairs = FramePairs(real=real_t, fake=fake_t, **extra)
            for metric in metrics.values():
                metric.update(pairs)
        for metric in metrics.values():
            metric.end_video()
    scores = {}
    for name, metric in metrics.items():
        metric.sync()
        scores[name] = metric.compute()
    return scores, sorted(set(real) - set(fake))
