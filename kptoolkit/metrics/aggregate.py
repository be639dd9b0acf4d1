"""From per-video sums to a score, and how certain that score is (pure numpy).

A metric leaves, per test video, the sum and the count of its valid per-frame values. Everything
in a results table is derived from these two arrays:

- `average(sums, counts, "frames")`: the published protocol, frames pooled over all videos
  (sum of sums / sum of counts), as FOMM's reconstruction L1 and the pose-evaluation scripts do;
- `average(sums, counts, "videos")`: each video's mean, then the mean over videos that have a
  valid frame;
- a percentile bootstrap over test videos: whole videos are resampled with replacement (the
  frames of a video stay together, pooled inside the resample), so the interval reflects how
  much the score depends on which videos happened to be in the test split;
- a paired bootstrap of the relative change between two rows scored on the same videos (the
  same resampled videos for both rows in every resample);
- several training seeds: arrays of shape (S, V); the score is the mean over seeds of each
  seed's score, its bootstrap interval resamples videos jointly for all seeds, and the seed
  spread is the sample standard deviation of the per-seed scores.
"""

from __future__ import annotations

import math
import warnings

import attrs
import numpy as np

from kptoolkit.config.schema import AVERAGES

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
DEFAULT_CONFIDENCE = 0.95


def check_average(how: str) -> str:
    """`how` if it is a known averaging, else a ValueError naming both choices."""
    if how not in AVERAGES:
        raise ValueError(f"unknown averaging {how!r}: choose 'frames' or 'videos'")
    return how


def _as_seed_video(values: np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2:
        raise ValueError(f"expected (videos,) or (seeds, videos) values, got {array.shape}")
    return array


def average(sums: np.ndarray, counts: np.ndarray, how: str = "frames") -> np.ndarray | float:
    """The score of per-video sums and counts, averaged over the last axis.

    Works on any leading shape (seeds, resamples); NaN where nothing is valid.
    """
    check_average(how)
    sums, counts = np.asarray(sums, dtype=np.float64), np.asarray(counts, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        if how == "frames":
            result = sums.sum(-1) / counts.sum(-1)
        else:
            means = np.where(counts > 0, sums / np.where(counts > 0, counts, 1.0), 0.0)
            result = means.sum(-1) / (counts > 0).sum(-1)
    return float(result) if np.ndim(result) == 0 else result


def resample_indices(videos: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, videos) indices of videos drawn with replacement, from a fixed seed."""
    if videos < 1:
        raise ValueError("the bootstrap needs at least one video")
    return np.random.default_rng(seed).integers(0, videos, size=(resamples, videos))


def _percentiles(values: np.ndarray, confidence: float) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return math.nan, math.nan
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return float(low), float(high)


def _resampled_scores(
    sums: np.ndarray, counts: np.ndarray, how: str, indices: np.ndarray
) -> np.ndarray:
    """(resamples,) seed-mean score of every resample of videos."""
    sums, counts = _as_seed_video(sums), _as_seed_video(counts)
    per_seed = average(sums[:, indices], counts[:, indices], how)  # (S, R)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample without a valid frame
        return np.nanmean(per_seed, axis=0) if per_seed.shape[0] > 1 else per_seed[0]


@attrs.frozen
class Estimate:
    """A score with its bootstrap interval and, over several seeds, their spread."""

    value: float
    low: float
    high: float
    seed_std: float = math.nan  # NaN with one seed
    seeds: int = 1

    @property
    def half_width(self) -> float:
        """Half the interval's width (what `value ± x` shows; the interval may be skewed)."""
        return (self.high - self.low) / 2.0


def estimate(
    sums: np.ndarray,
    counts: np.ndarray,
    how: str = "frames",
    indices: np.ndarray | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
) -> Estimate:
    """The score of (seeds, videos) or (videos,) sums and counts, with its interval and spread.

    `indices` are the bootstrap's resampled videos (`resample_indices`); without them the
    interval is NaN.
    """
    sums, counts = _as_seed_video(sums), _as_seed_video(counts)
    if sums.shape != counts.shape:
        raise ValueError(f"sums {sums.shape} and counts {counts.shape} differ in shape")
    per_seed = np.atleast_1d(average(sums, counts, how))
    finite = per_seed[np.isfinite(per_seed)]
    value = float(finite.mean()) if finite.size else math.nan
    spread = float(finite.std(ddof=1)) if finite.size > 1 else math.nan
    low = high = math.nan
    if indices is not None:
        low, high = _percentiles(_resampled_scores(sums, counts, how, indices), confidence)
    return Estimate(value, low, high, spread, int(sums.shape[0]))


def relative_change(row: np.ndarray, reference: np.ndarray, lower_is_better: bool) -> np.ndarray:
    """Improvement of `row` over `reference` in percent (positive = better)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        change = (reference - row) if lower_is_better else (row - reference)
        return 100.0 * change / np.abs(reference)


CHANGE_ROUNDING = 1e-9  # percent: a paired change this small is float noise, not a difference


@attrs.frozen
class Change:
    """A relative improvement in percent with its paired-bootstrap interval."""

    value: float
    low: float
    high: float

    @property
    def significant(self) -> bool:
        """True when the interval excludes zero (by more than float rounding: two rows with
        the same outputs, scored in another order, differ by about 1e-14 percent)."""
        return bool(self.low > CHANGE_ROUNDING or self.high < -CHANGE_ROUNDING)


def paired_change(
    row: tuple[np.ndarray, np.ndarray],
    reference: tuple[np.ndarray, np.ndarray],
    lower_is_better: bool,
    how: str = "frames",
    indices: np.ndarray | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
) -> Change:
    """Relative improvement of `row` over `reference`, both (sums, counts) on the same videos
    in the same order; each resample draws the same videos for both rows."""
    value = float(
        relative_change(
            np.asarray(estimate(*row, how).value),
            np.asarray(estimate(*reference, how).value),
            lower_is_better,
        )
    )
    low = high = math.nan
    if indices is not None:
        mine = _resampled_scores(*row, how, indices)
        theirs = _resampled_scores(*reference, how, indices)
        low, high = _percentiles(relative_change(mine, theirs, lower_is_better), confidence)
    return Change(value, low, high)
