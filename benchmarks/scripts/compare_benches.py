"""Two benches of the same rows on the same dataset, side by side: what a recipe change (a
lever) did to each row, with paired intervals, and whether each row clears the copy.

For each trained row both benches hold (same masker + generator + seed), per metric: the
baseline's and the changed bench's score, the relative change (positive = better) with its
95% paired-bootstrap interval over the test videos (the same resampled videos for both, as the
bench's improvement rows), and whether the changed row clears the no-motion copy (its interval
entirely on the better side of the copy's). Choose levers on a validation split, never on test:

    kptoolkit bench --dataset data/puppets-val --out val/base
    kptoolkit bench --dataset data/puppets-val --out val/ema --set train.ema_decay=0.998
    python benchmarks/scripts/compare_benches.py val/base val/ema
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from kptoolkit.bench.stages.stage_cache import read_state
from kptoolkit.metrics.aggregate import paired_change, resample_indices

METRICS = ("l1", "akd")
LOWER_IS_BETTER = {"l1": True, "akd": True}


def results(folder: Path) -> dict[str, dict[str, Any]]:
    """A bench's results.json rows by method name."""
    payload = json.loads((folder / "results.json").read_text())
    return {row["method"]: row for row in payload["rows"]}


def per_video(run: Path, metric: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(video names, sums, counts) of one metric of a run's scored reconstructions."""
    stored = read_state(run)["scores"]["per_video"][metric]
    return stored["names"], np.asarray(stored["sums"]), np.asarray(stored["counts"])


def clears(row: dict[str, Any], copy: dict[str, Any], metric: str) -> bool:
    """Whether the row's interval lies wholly on the better side of the copy's."""
    low, high = row["interval"][metric]
    copy_low, copy_high = copy["interval"][metric]
    return high < copy_low if LOWER_IS_BETTER[metric] else low > copy_high


def compare(base: Path, changed: Path, resamples: int = 1000) -> list[str]:
    """Markdown lines: one row per trained row both benches hold."""
    base_rows, changed_rows = results(base), results(changed)
    copy = changed_rows["Source frame (no motion)"]
    header = ["row"]
    for metric in METRICS:
        header += [f"{metric} base", f"{metric} changed", f"{metric} change %", "clears copy"]
    lines = ["| " + " | ".join(header) + " |", "|:---|" + "---:|" * (len(header) - 1)]
    for method, row in changed_rows.items():
        if row.get("role") not in ("variant", "baseline") or method not in base_rows:
            continue
        slug = f"{row['masker']}+{row['generator']}-seed{row['seeds'][0]}"
        cells = [method]
        for metric in METRICS:
            names, sums, counts = per_video(changed / "runs" / slug, metric)
            base_names, base_sums, base_counts = per_video(base / "runs" / slug, metric)
            if names != base_names:
                raise SystemExit(f"{slug}: the two benches scored different videos")
            indices = resample_indices(len(names), resamples, 0)
            change = paired_change(
                (sums, counts), (base_sums, base_counts), LOWER_IS_BETTER[metric], indices=indices
            )
            mark = "*" if change.significant else ""
            cells += [
                f"{base_rows[method]['metrics'][metric]:.4f}",
                f"{row['metrics'][metric]:.4f}",
                f"{change.value:+.1f} [{change.low:+.1f}, {change.high:+.1f}]{mark}",
                "yes" if clears(row, copy, metric) else "no",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    for metric in METRICS:
        low, high = copy["interval"][metric]
        lines.append(f"the copy's {metric}: {copy['metrics'][metric]:.4f} [{low:.4f}, {high:.4f}]")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", type=Path, help="the baseline bench's folder")
    parser.add_argument("changed", type=Path, help="the changed bench's folder")
    args = parser.parse_args()
    print("\n".join(compare(args.base, args.changed)))


if __name__ == "__main__":
    main()
