"""Scoring generated videos against real ones: folder against folder, or table against table.

Videos are paired by name (`png/<name>.png` from `kptoolkit reconstruct` pairs with the real
`<name>` frame folder or `<name>.mp4`). Frames stream in batches. Every metric keeps each
video's sum and count of frame values (`Evaluation.scores`), from which the score is the
published protocol's pooled frame mean or, on request, the mean of per-video means.

The public pose-evaluation scripts work on tables of detector outputs (`metrics.tables`):
`evaluate_folders(..., export_tables=DIR)` writes kptoolkit's evaluator outputs as such tables,
and `evaluate_tables` scores tables written by the scripts' `extract.py` (or by kptoolkit), so
numbers can be checked in both directions.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import attrs
import numpy as np
import torch
from tqdm import tqdm

from kptoolkit.data.datasets import frames_to_tensor
from kptoolkit.data.layout import VideoEntry
from kptoolkit.data.video_io import iter_frames, video_kind
from kptoolkit.errors import KptoolkitError
from kptoolkit.metrics import tables
from kptoolkit.metrics.base import FramePairs, Metric, VideoScores

TABLE_NAMES = {
    "pose": ("pose_gt.pkl", "pose_gen.pkl"),
    "identity": ("id_gt.pkl", "id_gen.pkl"),
}


class EvaluationError(KptoolkitError):
    """The folders cannot be compared (no common videos, different frame sizes, ...)."""


@attrs.frozen
class Evaluation:
    """Per metric its per-video sums and counts; real videos with no generated counterpart."""

    scores: dict[str, VideoScores]
    missing: list[str] = attrs.field(factory=list)
    tables: list[Path] = attrs.field(factory=list)  # pose-evaluation tables written

    def values(self, average: str = "frames") -> dict[str, float]:
        """Each metric's score under `average` ("frames" pooled, or "videos")."""
        return {name: scores.value(average) for name, scores in self.scores.items()}


# what each kind of evaluator gives per frame: (kind, method and FramePairs field stem)
EVALUATOR_OUTPUTS = (("pose", "keypoints"), ("identity", "embeddings"))


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


def _real_output(
    cache: dict[tuple, torch.Tensor] | None,
    key: tuple,
    evaluate: Callable[[torch.Tensor], torch.Tensor],
    frames: torch.Tensor,
) -> torch.Tensor:
    """`evaluate(frames)` for a batch of real frames, from `cache` when it holds `key` for the
    same number of frames."""
    if cache is None:
        return evaluate(frames)
    stored = cache.get(key)
    if stored is None or stored.shape[0] != frames.shape[0]:
        stored = cache[key] = evaluate(frames)
    return stored


def _check_requirements(metrics: dict[str, Metric], kinds: set[str], how: str) -> None:
    for name, metric in metrics.items():
        for need in metric.requires:
            if need not in kinds:
                raise EvaluationError(f"metric '{name}' needs a {need} evaluator ({how})")


def _close_video(metrics: dict[str, Metric], name: str) -> None:
    for metric in metrics.values():
        metric.end_video(name)


def _evaluation(metrics: dict[str, Metric], missing: list[str], written: list[Path]) -> Evaluation:
    scores = {}
    for name, metric in metrics.items():
        metric.sync()
        scores[name] = metric.video_scores()
    return Evaluation(scores, missing, written)


class _TableRows:
    """Collects evaluator outputs as pose-evaluation table rows (real and generated sides)."""

    def __init__(self, evaluators: dict[str, torch.nn.Module]) -> None:
        self.evaluators = evaluators
        self.rows: dict[str, tuple[list, list]] = {kind: ([], []) for kind in evaluators}

    def add(self, kind: str, side: int, file_name: str, first: int, values: torch.Tensor) -> None:
        """Rows of one batch of evaluator outputs; `side` 0 real, 1 generated."""
        as_none = getattr(self.evaluators[kind], "missing_as_none", False)
        for offset, value in enumerate(values.cpu().numpy()):
            if kind == "pose" and as_none and (value[:, 0] == tables.MISSING).all():
                value = None  # the face scripts' "no face found"
            elif kind == "identity" and np.isnan(value).any():
                value = None
            self.rows[kind][side].append((file_name, first + offset, value))

    def write(self, folder: Path) -> list[Path]:
        """One real and one generated table per evaluator kind, named as in the scripts."""
        written = []
        for kind, (real_rows, fake_rows) in self.rows.items():
            for rows, file_name in zip((real_rows, fake_rows), TABLE_NAMES[kind], strict=True):
                tables.export_table(rows, folder / file_name)
                written.append(folder / file_name)
        return written


def evaluate_folders(
    real_dir: str | Path,
    fake_dir: str | Path,
    metrics: dict[str, Metric],
    evaluators: Sequence[torch.nn.Module] = (),
    batch_size: int = 32,
    frame_width: int | None = None,
    progress: bool = True,
    export_tables: str | Path | None = None,
    real_cache: dict[tuple, torch.Tensor] | None = None,
) -> Evaluation:
    """Score every generated video against the real one of the same name.

    With `export_tables`, the evaluators' outputs on both sides are also written there as
    pose-evaluation tables (`pose_gt.pkl`, `pose_gen.pkl`, `id_gt.pkl`, `id_gen.pkl`).
    `real_cache`, a dict kept between calls that score against the same real videos with the
    same evaluators (the bench's rows), holds the evaluators' outputs on the real frames, so
    each real frame is evaluated once.
    """
    real, fake = videos_by_name(real_dir), videos_by_name(fake_dir)
    common = sorted(set(real) & set(fake))
    if not common:
        raise EvaluationError(
            f"no video names in common between {real_dir} ({len(real)} videos) and {fake_dir} "
            f"({len(fake)} videos)"
        )
    by_kind = {}
    for evaluator in evaluators:
        by_kind.setdefault(evaluator.kind, evaluator)
    _check_requirements(metrics, set(by_kind), "--evaluator")
    rows = _TableRows(by_kind) if export_tables is not None else None
    for name in tqdm(common, desc="scoring", unit="video", disable=not progress):
        first = 0
        for real_frames, fake_frames in _pairs(real[name], fake[name], batch_size, frame_width):
            real_t = frames_to_tensor(np.stack(real_frames))
            fake_t = frames_to_tensor(np.stack(fake_frames))
            if real_t.shape != fake_t.shape:
                raise EvaluationError(
                    f"{name}: real frames are {tuple(real_t.shape[-2:])}, generated ones "
                    f"{tuple(fake_t.shape[-2:])}; give --frame-width for stacked images"
                )
            extra = {}
            for kind, field in EVALUATOR_OUTPUTS:
                if kind in by_kind:
                    evaluate = getattr(by_kind[kind], field)
                    key = (id(by_kind[kind]), field, str(real[name]), frame_width, first)
                    extra[f"real_{field}"] = _real_output(real_cache, key, evaluate, real_t)
                    extra[f"fake_{field}"] = evaluate(fake_t)
            if rows is not None:
                for kind, field in EVALUATOR_OUTPUTS:
                    if kind in by_kind:
                        rows.add(kind, 0, real[name].name, first, extra[f"real_{field}"])
                        rows.add(kind, 1, fake[name].name, first, extra[f"fake_{field}"])
            pairs = FramePairs(real=real_t, fake=fake_t, **extra)
            for metric in metrics.values():
                metric.update(pairs)
            first += real_t.shape[0]
        _close_video(metrics, name)
    written = rows.write(Path(export_tables)) if rows is not None else []
    return _evaluation(metrics, sorted(set(real) - set(fake)), written)


def evaluate_tables(
    real_table: str | Path, fake_table: str | Path, metrics: dict[str, Metric]
) -> Evaluation:
    """Score two pose-evaluation tables (real, generated) with the metrics they allow.

    Videos pair by file name up to its first dot and frames by number, as in the public
    scripts; a keypoint table feeds AKD / MKR, an embedding table AED. A `None` row is a frame
    where nothing was detected: no AKD for it, every real joint missing for MKR, no AED.
    """
    real, fake = tables.import_table(real_table), tables.import_table(fake_table)
    try:  # shapes, common frames, values present in both
        tables.check_comparable(real, fake, real_table, fake_table)
    except KptoolkitError as exc:
        raise EvaluationError(str(exc)) from None
    kind = "pose" if tables.is_keypoint_table(real) else "identity"
    _check_requirements(metrics, {kind}, f"the tables hold {kind} values")
    for name, metric in metrics.items():
        if not metric.requires:
            raise EvaluationError(f"metric '{name}' needs frames; tables hold only {kind} values")
    real_videos = {tables.video_key(n): video for n, video in real.items()}
    fake_videos = {tables.video_key(n): video for n, video in fake.items()}
    common = sorted(set(real_videos) & set(fake_videos))
    if not common:
        raise EvaluationError(f"no video names in common between {real_table} and {fake_table}")
    stack = tables.stack_keypoints if kind == "pose" else tables.stack_embeddings
    field = "keypoints" if kind == "pose" else "embeddings"
    for name in common:
        frames = sorted(set(real_videos[name]) & set(fake_videos[name]))
        real_rows = [real_videos[name][i] for i in frames]
        fake_rows = [fake_videos[name][i] for i in frames]
        if any(v is not None for v in real_rows + fake_rows):
            real_rows, fake_rows = (
                _fill_empty(real_rows, fake_rows),
                _fill_empty(fake_rows, real_rows),
            )
            pairs = FramePairs(
                **{
                    f"real_{field}": torch.from_numpy(stack(real_rows)),
                    f"fake_{field}": torch.from_numpy(stack(fake_rows)),
                }
            )
            for metric in metrics.values():
                metric.update(pairs)
        _close_video(metrics, name)
    return _evaluation(metrics, sorted(set(real_videos) - set(fake_videos)), [])


def _fill_empty(values: list, other: list) -> list:
    """A video side with only None rows borrows the other side's shape (as nothing detected)."""
    if any(v is not None for v in values):
        return values
    template = next(v for v in other if v is not None)
    return [np.full(template.shape, tables.MISSING if template.ndim == 2 else np.nan)] * len(values)
