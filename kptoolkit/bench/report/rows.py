"""The table's rows from what the stages stored: their names, and every run's per-video scores
aligned on the reference row's videos."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from kptoolkit.bench.plan import Entry
from kptoolkit.bench.report.results import STATIC_CONTROL_SUFFIX, ResultRow
from kptoolkit.metrics.base import VideoScores

REFERENCE_LABEL = "Source frame (no motion)"
CONTROL_LABELS = {"static": STATIC_CONTROL_SUFFIX, "warped": ", warped source only"}

PerVideo = dict[str, dict[str, list]]  # per metric, each test video's sum and count (JSON)


def video_names(per_video: PerVideo) -> list[str]:
    """The test videos scored for any metric, in the order first met."""
    names: list[str] = []
    for scores in per_video.values():
        names += [n for n in scores["names"] if n not in names]
    return names


def align(
    runs: Sequence[PerVideo], names: Sequence[str]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per metric, (seeds, videos) sums and counts in the order of `names`; a video a run lacks
    weighs nothing (count 0)."""
    position = {name: i for i, name in enumerate(names)}
    metrics = [m for m in runs[0] if all(m in run for run in runs)]
    aligned = {}
    for metric in metrics:
        sums = np.zeros((len(runs), len(position)))
        counts = np.zeros((len(runs), len(position)))
        for seed_index, run in enumerate(runs):
            scores = VideoScores.from_json(run[metric])
            for name, total, count in zip(scores.names, scores.sums, scores.counts, strict=True):
                if name in position:
                    sums[seed_index, position[name]] = total
                    counts[seed_index, position[name]] = count
        aligned[metric] = (sums, counts)
    return aligned


def untrained_row(method: str, role: str, per_video: PerVideo, names: Sequence[str]) -> ResultRow:
    """A row measured without a model (the no-motion reference, an evaluator's floor)."""
    return ResultRow(
        method=method,
        role=role,
        masker="-",
        generator="-",
        metrics={},
        params=0,
        ms_per_frame=math.nan,
        train_seconds=math.nan,
        steps=0,
        per_video=align([per_video], names),
    )


def scored_floors(evaluator_info: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """`evaluator_info` with, for each evaluator whose floor is stored per video, its floor
    pooled over the table's test videos (`names`, the floor row's numbers) as `scored_floor`:
    the stored floor covers every test video, the table only those it scores."""
    found = {}
    for kind, info in evaluator_info.items():
        per_video = (info.get("floor") or {}).get("per_video")
        found[kind] = dict(info)
        if per_video and names:
            pooled = {}
            for metric, stored in per_video.items():
                scores = VideoScores.from_json(stored)
                keep = [i for i, name in enumerate(scores.names) if name in set(names)]
                count = sum(scores.counts[i] for i in keep)
                pooled[metric] = sum(scores.sums[i] for i in keep) / count if count else math.nan
            found[kind]["scored_floor"] = {**pooled, "videos": len(names)}
    return found


def floor_rows(evaluator_info: dict[str, Any], names: Sequence[str]) -> list[ResultRow]:
    """The evaluators' own error on real test frames against ground truth, where the evaluator
    reports it per video (the synthetic pose evaluator): one row, or none."""
    rows = []
    for info in evaluator_info.values():
        per_video = (info.get("floor") or {}).get("per_video")
        if not per_video:
            continue
        name = info["identity"]["name"]
        method = f"Evaluator floor ({name}: real frames vs ground truth)"
        rows.append(untrained_row(method, "floor", per_video, names))
    return rows


def trained_row(
    entry: Entry,
    measured: Sequence[dict[str, Any]],
    trained: Sequence[dict[str, Any]],
    seeds: Sequence[int],
    names: Sequence[str],
) -> ResultRow:
    """One row from each seed's measurement and training record (times and speeds averaged)."""
    return ResultRow(
        method=entry.label,
        role=entry.role,
        masker=entry.masker,
        generator=entry.generator,
        metrics={},
        params=int(measured[0]["params"]),
        ms_per_frame=float(np.mean([m["ms_per_frame"] for m in measured])),
        train_seconds=float(np.mean([t["seconds"] for t in trained])),
        steps=int(trained[0]["steps"]),
        seeds=list(seeds),
        per_video=align([m["per_video"] for m in measured], names),
    )


def control_row(
    entry: Entry,
    control: str,
    measured: Sequence[PerVideo],
    seeds: Sequence[int],
    names: Sequence[str],
) -> ResultRow:
    """One row of a row's control from each seed's per-video scores."""
    return ResultRow(
        method=f"{entry.label}{CONTROL_LABELS[control]}",
        role="control",
        masker=entry.masker,
        generator=entry.generator,
        metrics={},
        params=0,
        ms_per_frame=math.nan,
        train_seconds=math.nan,
        steps=0,
        seeds=list(seeds),
        per_video=align(measured, names),
    )
