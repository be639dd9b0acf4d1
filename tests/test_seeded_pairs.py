"""benchmarks/scripts/seeded_pairs.py: a seeded bench's rows against a reference row."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "scripts" / "seeded_pairs.py"
spec = importlib.util.spec_from_file_location("seeded_pairs", SCRIPT)
seeded_pairs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(seeded_pairs)

VIDEOS = [f"v{i:02d}" for i in range(40)]


def _bench(folder: Path, l1_by_row_and_seed: dict[str, list[np.ndarray]]) -> Path:
    """A bench folder holding only what the script reads: results.json and per-video sums."""
    rows = []
    for pair, per_seed in l1_by_row_and_seed.items():
        masker, generator = pair.split("+")
        rows.append({"method": pair, "role": "baseline", "masker": masker, "generator": generator})
        for seed, values in enumerate(per_seed):
            run = folder / "runs" / f"{pair}-seed{seed}"
            run.mkdir(parents=True)
            scores = {
                metric: {"names": VIDEOS, "sums": list(values * 10), "counts": [10] * len(VIDEOS)}
                for metric in seeded_pairs.METRICS
            }
            state = {"scores": {"per_video": scores}}
            (run / "bench-state.json").write_text(json.dumps(state))
    (folder / "results.json").write_text(json.dumps({"rows": rows}))
    return folder


def test_orderings_that_hold_are_told_from_unresolved_reversed_and_pooled_ones(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.uniform(0.02, 0.04, len(VIDEOS))
    noise = [rng.normal(0, 1e-4, len(VIDEOS)) for _ in range(3)]
    folder = _bench(
        tmp_path,
        {
            "heatmap_sum+two_stage": [base + n for n in noise],
            "worse+everywhere": [base * 1.2 + n for n in noise],
            "same+row": [base + n[::-1] for n in noise],
            "better+in_one_seed": [base * 1.2, base * 1.2, base * 0.7],
            "close+in_one_seed": [base * 1.2, base * 1.2, base + noise[2][::-1]],
        },
    )
    lines = seeded_pairs.compare(folder, [0, 1, 2], "heatmap_sum+two_stage")
    verdicts = {line.split(" | ")[0][2:]: line.rsplit(" | ", 1)[1][:-2] for line in lines[4:]}
    assert verdicts == {
        "worse+everywhere": "holds",
        "same+row": "not resolved",
        "better+in_one_seed": "reversed in a seed",
        "close+in_one_seed": "pooled only",
    }
    # the reference is better than the row that is 20% worse: about +16.7%
    worse = next(line for line in lines if line.startswith("| worse+everywhere | l1"))
    assert "+16.7" in worse
