"""The bench's results: measured rows and the table built from them.

A row carries each metric's per-video sums and counts (per seed); `build_table` turns them into
scores with bootstrap intervals over test videos, seed spread and paired-bootstrap improvements
over FOMM (`kptoolkit.metrics.aggregate`). Its text forms (Markdown, CSV, JSON, LaTeX, and the
published numbers apart) are in `formats.py`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import attrs
import numpy as np

from kptoolkit.bench.defaults import REFERENCE_GENERATOR
from kptoolkit.metrics import aggregate
from kptoolkit.metrics.base import Metric
from kptoolkit.nn.component import hook


@attrs.frozen
class Column:
    """A numeric column: key in the row, header, number of digits, and which way is better."""

    key: str
    header: str
    digits: int
    lower_is_better: bool | None  # None: a cost column with no improvement figure


METRIC_COLUMNS = (
    Column("l1", "L1", 4, True),
    Column("akd", "AKD", 3, True),
    Column("mkr", "MKR", 3, True),
    Column("aed", "AED", 3, True),
    Column("psnr", "PSNR", 2, False),
    Column("ssim", "SSIM", 3, False),
)
COST_COLUMNS = (
    Column("params_m", "Params (M)", 2, None),
    Column("ms_per_frame", "ms/frame", 1, None),
    Column("train_minutes", "Train (min)", 1, None),
)
EXTRA_METRIC_DIGITS = 4


def metric_columns(rows: Sequence[ResultRow]) -> tuple[Column, ...]:
    """The standard metric columns, then one per other metric the rows were scored with (a
    registered plugin metric), headed by its name, in the order first met."""
    from kptoolkit.registry.registries import METRICS

    known = {c.key for c in METRIC_COLUMNS}
    extra: list[str] = []
    for row in rows:
        for key in row.per_video:
            if key not in known and key not in extra:
                extra.append(key)
    columns = list(METRIC_COLUMNS)
    for key in extra:
        higher = (
            bool(hook(METRICS.get(key), "higher_is_better", Metric)) if key in METRICS else False
        )
        columns.append(Column(key, key, EXTRA_METRIC_DIGITS, not higher))
    return tuple(columns)


STATIC_CONTROL_SUFFIX = ", driven by frame 0"  # a control row's name: its row's, then this


@attrs.define
class ResultRow:
    """The measured outcome of one row: a trained masker x generator pair (over one or several
    seeds), or a reference row (the no-motion copy, the evaluator floor).

    `per_video` holds, per metric, the (seeds, videos) sums and counts of valid frame values on
    the table's test videos (in one shared order): every score and interval derives from them.
    `metrics` holds point values for metrics without per-video data (hand-built rows).
    """

    method: str
    role: str  # "baseline", "variant", "reference" or "floor"
    masker: str
    generator: str
    metrics: dict[str, float]
    params: int
    ms_per_frame: float
    train_seconds: float
    steps: int
    seeds: list[int] = attrs.field(factory=list)
    per_video: dict[str, tuple[np.ndarray, np.ndarray]] = attrs.field(factory=dict, repr=False)

    def value(self, key: str) -> float:
        """The number of a cost column `key`, or a metric's stored point value (NaN if none)."""
        if key == "params_m":
            return self.params / 1e6
        if key == "ms_per_frame":
            return self.ms_per_frame
        if key == "train_minutes":
            return self.train_seconds / 60.0
        return float(self.metrics.get(key, math.nan))


@attrs.frozen
class TableSettings:
    """How per-video scores become the table's numbers (`eval.*` of the config)."""

    average: str = "frames"
    resamples: int = aggregate.DEFAULT_RESAMPLES
    seed: int = aggregate.DEFAULT_SEED
    confidence: float = aggregate.DEFAULT_CONFIDENCE

    def describe(self) -> str:
        """One sentence for captions."""
        how = (
            "frames pooled over all test videos"
            if self.average == "frames"
            else "per-video means averaged over videos"
        )
        return (
            f"Scores: {how}. ± is half the width of the {self.confidence:.0%} percentile "
            f"bootstrap interval over test videos ({self.resamples} resamples of whole videos, "
            f"seed {self.seed})"
        )


@attrs.define
class Table:
    """Rows with their estimates, each variant's paired change against FOMM and each trained
    row's against its own frame-0 control."""

    rows: list[ResultRow]
    estimates: dict[str, dict[str, aggregate.Estimate]]  # method -> metric -> estimate
    improvements: dict[str, dict[str, aggregate.Change]]  # variant -> metric -> change
    settings: TableSettings
    videos: int  # test videos the intervals resample
    metric_columns: tuple[Column, ...] = METRIC_COLUMNS
    # trained row -> metric -> its change against itself driven by frame 0 (what the driving
    # frames' motion buys; zero for a model that ignores them)
    motion: dict[str, dict[str, aggregate.Change]] = attrs.field(factory=dict)

    @property
    def columns(self) -> tuple[Column, ...]:
        """The metric columns, then the cost columns."""
        return self.metric_columns + COST_COLUMNS

    @property
    def several_seeds(self) -> bool:
        """True when some row averages more than one seed."""
        return any(len(r.seeds) > 1 for r in self.rows)

    def estimate(self, row: ResultRow, key: str) -> aggregate.Estimate:
        """The estimate of metric `key` for `row`."""
        found = self.estimates[row.method].get(key)
        if found is None:
            return aggregate.Estimate(row.value(key), math.nan, math.nan)
        return found


def _row_estimates(
    row: ResultRow, settings: TableSettings, indices: np.ndarray | None
) -> dict[str, aggregate.Estimate]:
    return {
        key: aggregate.estimate(sums, counts, settings.average, indices, settings.confidence)
        for key, (sums, counts) in row.per_video.items()
    }


def _fomm_row(rows: Sequence[ResultRow]) -> ResultRow | None:
    return next(
        (r for r in rows if r.role == "baseline" and r.generator == REFERENCE_GENERATOR), None
    )


def build_table(rows: Sequence[ResultRow], settings: TableSettings = TableSettings()) -> Table:
    """Estimates, intervals, paired improvements over FOMM and each trained row's paired
    change against its frame-0 control for `rows`.

    Every row's per-video arrays must cover the same videos in the same order (the bench scores
    them so); the bootstrap draws one set of resampled videos for the whole table.
    """
    videos = {sums.shape[-1] for r in rows for sums, _ in r.per_video.values()}
    if len(videos) > 1:
        raise ValueError(f"rows are scored on different numbers of videos: {sorted(videos)}")
    count = videos.pop() if videos else 0
    indices = (
        aggregate.resample_indices(count, settings.resamples, settings.seed) if count else None
    )
    estimates = {r.method: _row_estimates(r, settings, indices) for r in rows}
    table = Table(list(rows), estimates, {}, settings, count, metric_columns(rows))
    for row in rows:
        control = _static_control(rows, row)
        if control is not None:
            table.motion[row.method] = _paired_changes(table, row, control, indices)
    fomm = _fomm_row(rows)
    if fomm is None:
        return table
    for row in rows:
        if row.role == "variant":
            table.improvements[row.method] = _paired_changes(table, row, fomm, indices)
    return table


def _static_control(rows: Sequence[ResultRow], row: ResultRow) -> ResultRow | None:
    """The control row of `row` driven by frame 0 (None for a reference row or without one)."""
    if row.role in ("reference", "floor", "control"):
        return None
    label = row.method + STATIC_CONTROL_SUFFIX
    return next((r for r in rows if r.role == "control" and r.method == label), None)


def _paired_changes(
    table: Table, row: ResultRow, other: ResultRow, indices: np.ndarray | None
) -> dict[str, aggregate.Change]:
    """Per metric column, `row`'s relative change against `other` (positive = better): paired
    over the same resampled videos where both have per-video scores, else a point value."""
    settings, changes = table.settings, {}
    for column in table.metric_columns:
        if column.key in row.per_video and column.key in other.per_video:
            changes[column.key] = aggregate.paired_change(
                row.per_video[column.key],
                other.per_video[column.key],
                column.lower_is_better,
                settings.average,
                indices,
                settings.confidence,
            )
        else:
            mine = table.estimate(row, column.key).value
            theirs = table.estimate(other, column.key).value
            value = float(
                aggregate.relative_change(
                    np.asarray(mine), np.asarray(theirs), column.lower_is_better
                )
            )
            changes[column.key] = aggregate.Change(value, math.nan, math.nan)
    return changes
