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


def _write_scores(folder: Path, values: np.ndarray) -> None:
    """A stage folder's stored per-video scores: every metric scores `values` on each video."""
    folder.mkdir(parents=True)
    scores = {
        metric: {"names": VIDEOS, "sums": list(values * 10), "counts": [10] * len(VIDEOS)}
        for metric in seeded_pairs.METRICS
    }
    (folder / "bench-state.json").write_text(json.dumps({"scores": {"per_video": scores}}))


def _bench(folder: Path, l1_by_row_and_seed: dict[str, list[np.ndarray]]) -> Path:
    """A bench folder holding only what the script reads: results.json and per-video sums."""
    rows = []
    for pair, per_seed in l1_by_row_and_seed.items():
        masker, generator = pair.split("+")
        rows.append({"method": pair, "role": "baseline", "masker": masker, "generator": generator})
        for seed, values in enumerate(per_seed):
            _write_scores(folder / "runs" / f"{pair}-seed{seed}", values)
    (folder / "results.json").write_text(json.dumps({"rows": rows}))
    return folder


def _scores_and_noise(seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Per-video scores and three seeds' small training noise."""
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0.02, 0.04, len(VIDEOS))
    return scores, [rng.normal(0, 1e-4, len(VIDEOS)) for _ in range(3)]


def test_orderings_that_hold_are_told_from_unresolved_reversed_and_pooled_ones(tmp_path):
    base, noise = _scores_and_noise(0)
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


def _with_copy(folder: Path, copy_l1: np.ndarray, uncertainty: dict | None = None) -> Path:
    """Add the copy of frame 0's per-video scores (and the table's settings) to a bench."""
    _write_scores(folder / "reference-source-frame", copy_l1)
    if uncertainty is not None:
        payload = json.loads((folder / "results.json").read_text())
        (folder / "results.json").write_text(json.dumps({**payload, "uncertainty": uncertainty}))
    return folder


def _clears(lines: list[str]) -> dict[tuple[str, str], str]:
    cells = [line[2:-2].split(" | ") for line in lines[4:]]
    return {(c[0], c[1]): c[-1] for c in cells}


def test_each_row_is_checked_against_the_copy_seed_by_seed(tmp_path):
    copy, noise = _scores_and_noise(1)
    folder = _bench(
        tmp_path,
        {
            "clears+always": [copy * 0.6 + n for n in noise],
            "never+clears": [copy + n for n in noise],
            "clears+twice": [copy * 0.6, copy * 1.0, copy * 0.6],
        },
    )
    lines = seeded_pairs.against_copy(_with_copy(folder, copy), [0, 1, 2])
    assert _clears(lines) == {
        ("clears+always", "l1"): "every seed",
        ("clears+always", "akd"): "every seed",
        ("never+clears", "l1"): "no seed",
        ("never+clears", "akd"): "no seed",
        ("clears+twice", "l1"): "seeds 0, 2",
        ("clears+twice", "akd"): "seeds 0, 2",
    }
    assert not any(line.startswith("| clears+always | aed") for line in lines)


def test_the_copy_check_uses_the_benchs_own_interval_settings(tmp_path):
    rng = np.random.default_rng(2)
    copy = rng.uniform(0.02, 0.04, len(VIDEOS))
    close = copy * 0.97 + rng.normal(0, 2e-3, len(VIDEOS))
    default = _with_copy(_bench(tmp_path / "default", {"close+row": [close]}), copy)
    assert _clears(seeded_pairs.against_copy(default, [0]))[("close+row", "l1")] == "no seed"
    narrow = {"average": "frames", "resamples": 500, "seed": 3, "confidence": 0.2}
    folder = _with_copy(_bench(tmp_path / "narrow", {"close+row": [close]}), copy, narrow)
    stored = seeded_pairs.against_copy(folder, [0])
    assert "20% bootstrap" in stored[0]
    assert _clears(stored)[("close+row", "l1")] == "every seed"
