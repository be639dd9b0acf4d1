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

Then, for every trained row, whether it clears the copy of frame 0 (the bench's no-motion
reference) on L1 and AKD in each seed alone: the row's 95% bootstrap interval of that seed must
end below the copy's (the bench's own resamples, so that the numbers match its table).

    python benchmarks/scripts/seeded_pairs.py bench-results/quick --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import attrs

from kptoolkit.bench.report.results import TableSettings
from kptoolkit.bench.report.rows import align, video_names
from kptoolkit.bench.stages.reference import REFERENCE_DIR
from kptoolkit.bench.stages.stage_cache import read_state
from kptoolkit.metrics.aggregate import Change, Estimate, estimate, paired_change, resample_indices

METRICS = ("l1", "akd", "aed")
COPY_METRICS = ("l1", "akd")  # the copy keeps the identity: AED is not a motion test
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


def per_video_runs(folder: Path, pair: str, seeds: list[int]) -> list[dict]:
    """Each seed's stored per-video scores of one row (`runs/<pair>-seed<N>`)."""
    runs = []
    for seed in seeds:
        state = read_state(folder / "runs" / f"{pair}-seed{seed}")
        if "scores" not in state:
            raise SystemExit(f"{folder}: {pair} seed {seed} is not scored: run the bench first")
        runs.append(state["scores"]["per_video"])
    return runs


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
    mine_runs = per_video_runs(folder, reference, seeds)
    names = video_names(mine_runs[0])  # every row aligned on the reference's test videos
    mine = align(mine_runs, names)
    indices = resample_indices(len(names), resamples, 0)
    for pair, method in rows.items():
        if pair == reference:
            continue
        theirs = align(per_video_runs(folder, pair, seeds), names)
        for metric in METRICS:
            (my_sums, my_counts), (their_sums, their_counts) = mine[metric], theirs[metric]
            lower = LOWER_IS_BETTER[metric]
            pooled = paired_change(
                (my_sums, my_counts), (their_sums, their_counts), lower, indices=indices
            )
            per_seed = [
                paired_change(
                    (my_sums[i], my_counts[i]),
                    (their_sums[i], their_counts[i]),
                    lower,
                    indices=indices,
                )
                for i in range(len(seeds))
            ]
            cells = [method, metric, _cell(pooled), *map(_cell, per_seed)]
            cells.append(verdict(pooled, per_seed))
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def copy_scores(folder: Path) -> dict:
    """The copy of frame 0's stored per-video scores."""
    state = read_state(folder / REFERENCE_DIR)
    if "scores" not in state:
        raise SystemExit(f"{folder}: the copy of frame 0 is not scored: run the bench first")
    return state["scores"]["per_video"]


def clears_in(row: list[Estimate], copy: Estimate, seeds: list[int]) -> str:
    """'every seed', 'no seed' or 'seeds 0, 2': where a row's interval ends below the copy's."""
    cleared = [str(s) for s, e in zip(seeds, row, strict=True) if e.high < copy.low]
    if len(cleared) == len(seeds):
        return "every seed"
    if not cleared:
        return "no seed"
    return ("seeds " if len(cleared) > 1 else "seed ") + ", ".join(cleared)


def _interval(e: Estimate, digits: int) -> str:
    return f"{e.value:.{digits}f} [{e.low:.{digits}f}, {e.high:.{digits}f}]"


def table_settings(folder: Path) -> TableSettings:
    """How the bench turned per-video scores into its table (results.json's `uncertainty`)."""
    stored = json.loads((folder / "results.json").read_text()).get("uncertainty", {})
    fields = attrs.fields_dict(TableSettings)
    return TableSettings(**{k: v for k, v in stored.items() if k in fields})


def against_copy(folder: Path, seeds: list[int]) -> list[str]:
    """Markdown lines: every trained row's per-seed interval beside the copy's (row, metric)."""
    settings = table_settings(folder)
    copy_runs = [copy_scores(folder)]
    names = video_names(copy_runs[0])  # the bench aligns every row on the copy's videos
    indices = resample_indices(len(names), settings.resamples, settings.seed)

    def score(sums, counts) -> Estimate:
        return estimate(sums, counts, settings.average, indices, settings.confidence)

    copy = {metric: score(*scores) for metric, scores in align(copy_runs, names).items()}

    seed_header = " | ".join(f"seed {s}" for s in seeds)
    lines = [
        f"Each trained row against the copy of frame 0, seed by seed (score "
        f"[{settings.confidence:.0%} bootstrap interval over test videos]; a row clears the copy "
        "where its interval ends below the copy's)",
        "",
        f"| row | metric | copy | {seed_header} | clears the copy in |",
        "|:---|:---|---:|" + "---:|" * len(seeds) + ":---|",
    ]
    for pair, method in trained_rows(folder).items():
        theirs = align(per_video_runs(folder, pair, seeds), names)
        for metric in COPY_METRICS:
            digits = 4 if metric == "l1" else 3
            sums, counts = theirs[metric]
            per_seed = [score(sums[i], counts[i]) for i in range(len(seeds))]
            cells = [method, metric, _interval(copy[metric], digits)]
            cells += [_interval(e, digits) for e in per_seed]
            cells.append(clears_in(per_seed, copy[metric], seeds))
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
    print()
    print("\n".join(against_copy(args.folder, seeds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
