"""One bench's rows against one of them, over its seeds: which orderings hold, with intervals.

A seeded bench (`kptoolkit bench ... --seeds 0,1,2`) reports each row's improvement over FOMM
only. This script takes any row as the reference (by default heatmap_sum + two_stage, the
paper's method) and, for every other trained row of the bench and each metric, prints:

- the relative change of the reference over the row (positive = the reference is better) on the
  mean over seeds, with its 95% paired-bootstrap interval over the test videos (every resample
  draws the same videos for both rows and all seeds, as the bench's improvement rows);
- the change within each seed alone (its own paired interval), so that an ordering that one
  seed carries shows as such;
- a verdict: `holds` when the pooled interval and every seed's interval exclude zero on the
  same side; `reversed in a seed` when a seed's interval excludes zero on the other side;
  `pooled only` when the pooled interval excludes zero but a seed's alone does not; `not
  resolved` when the pooled interval holds zero. The pooled interval resamples videos, not
  training runs: only the per-seed columns show how far training noise moves an ordering.

    python benchmarks/scripts/seeded_pairs.py bench-results/quick --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from kptoolkit.bench.stages.stage_cache import read_state
from kptoolkit.metrics.aggregate import Change, paired_change, resample_indices

METRICS = ("l1", "akd", "aed")
LOWER_IS_BETTER = {"l1": True, "akd": True, "aed": True}
DEFAULT_REFERENCE = "heatmap_sum+two_stage"


def trained_rows(folder: Path) -> dict[str, str]:
    """'masker+generator' -> the table's name, for every trained row of a bench."""
    payload = json.loads((folder / "results.json").read_text())
    return {
        f"{row['masker']}+{row['generator']}": row["method"]
        for row in payload["rows"]
        if row.get("role") in ("variant", "baseline")
    }


def seed_scores(
    folder: Path, pair: str, seeds: list[int], metric: str
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(video names, (seeds, videos) sums, counts) of one metric of a row's runs."""
    names: list[str] | None = None
    sums, counts = [], []
    for seed in seeds:
        run = folder / "runs" / f"{pair}-seed{seed}"
        if not (run / "bench-state.json").is_file():
            raise SystemExit(f"{run} is missing: run the bench with --seeds first")
        stored = read_state(run)["scores"]["per_video"][metric]
        if names is not None and stored["names"] != names:
            raise SystemExit(f"{run}: scored other test videos than the row's other seeds")
        names = stored["names"]
        sums.append(stored["sums"])
        counts.append(stored["counts"])
    assert names is not None
    return names, np.asarray(sums, dtype=np.float64), np.asarray(counts, dtype=np.float64)


def verdict(pooled: Change, per_seed: list[Change]) -> str:
    """'holds', 'reversed in a seed', 'pooled only' or 'not resolved' (module docstring)."""
    if not pooled.significant:
        return "not resolved"
    sign = pooled.value > 0
    if any(c.significant and (c.value > 0) != sign for c in per_seed):
        return "reversed in a seed"
    return "holds" if all(c.significant for c in per_seed) else "pooled only"


def _cell(change: Change) -> str:
    return f"{change.value:+.1f} [{change.low:+.1f}, {change.high:+.1f}]"


def compare(folder: Path, seeds: list[int], reference: str, resamples: int = 1000) -> list[str]:
    """Markdown lines: one line per (row, metric)."""
    rows = trained_rows(folder)
    if reference not in rows:
        raise SystemExit(f"{folder} has no row {reference!r}; it has {', '.join(rows)}")
    seed_header = " | ".join(f"seed {s}" for s in seeds)
    lines = [
        f"{rows[reference]} against each row, {len(seeds)} seeds (change %, positive = "
        f"{rows[reference]} better; 95% paired bootstrap over test videos)",
        "",
        f"| row | metric | pooled | {seed_header} | ordering |",
        "|:---|:---|---:|" + "---:|" * len(seeds) + ":---|",
    ]
    for pair, method in rows.items():
        if pair == reference:
            continue
        for metric in METRICS:
            names, mine, my_counts = seed_scores(folder, reference, seeds, metric)
            other_names, theirs, their_counts = seed_scores(folder, pair, seeds, metric)
            if names != other_names:
                raise SystemExit(f"{pair}: scored other test videos than {reference}")
            indices = resample_indices(len(names), resamples, 0)
            lower = LOWER_IS_BETTER[metric]
            pooled = paired_change(
                (mine, my_counts), (theirs, their_counts), lower, indices=indices
            )
            per_seed = [
                paired_change(
                    (mine[i], my_counts[i]), (theirs[i], their_counts[i]), lower, indices=indices
                )
                for i in range(len(seeds))
            ]
            cells = [method, metric, _cell(pooled), *map(_cell, per_seed)]
            cells.append(verdict(pooled, per_seed))
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the bench's output folder")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument(
        "--reference", default=DEFAULT_REFERENCE, help="masker+generator of the reference row"
    )
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    print("\n".join(compare(args.folder, seeds, args.reference)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
