"""The results header says what the table measured: the evaluator's floor over the videos the
table scores, which evaluator scored, each row's own training settings, skipped videos."""

from __future__ import annotations

import math

import pytest

from kptoolkit.bench.report.header import markdown_header
from kptoolkit.bench.report.rows import floor_rows, scored_floors
from kptoolkit.metrics.base import VideoScores

# three test videos; the table scores two of them
PER_VIDEO = {
    "akd": VideoScores(("a", "b", "c"), [10.0, 30.0, 2.0], [2, 3, 4]).to_json(),
    "mkr": VideoScores(("a", "b", "c"), [0.0, 1.0, 0.0], [2, 3, 4]).to_json(),
}
POSE = {
    "identity": {
        "name": "synthetic_pose",
        "metadata": {"steps": 400, "batch_size": 32, "seed": 0},
        "weights": {"name": "synthetic_pose-0123456789ab.pth"},
    },
    "floor": {"akd": 42 / 9, "mkr": 1 / 9, "frames": 9, "per_video": PER_VIDEO},
}


def _context(evaluators, budget=None, dataset=None) -> dict:
    return {
        "profile": "micro",
        "date": "today",
        "machine": {
            "cpu": "CPU",
            "torch_threads": 2,
            "capability": "AVX2",
            "native_bf16": False,
            "torch": "2",
        },
        "dataset": {"name": "synthetic_puppets", "frame_size": 64, **(dataset or {})},
        "budget": {
            "steps": 1,
            "batch_size": 2,
            "lr": {"FOMM": 2e-4},
            "seeds": [0],
            "precision": "fp32",
            "channels_last": True,
            **(budget or {}),
        },
        "evaluators": evaluators,
    }


def test_the_floor_is_pooled_over_the_scored_videos_as_the_floor_row_is():
    names = ["a", "b"]
    floors = scored_floors({"pose": POSE}, names)
    assert floors["pose"]["scored_floor"] == {"akd": 40 / 5, "mkr": 1 / 5, "videos": 2}
    (row,) = floor_rows({"pose": POSE}, names)
    sums, counts = row.per_video["akd"]
    assert sums.sum() / counts.sum() == pytest.approx(floors["pose"]["scored_floor"]["akd"])
    header = markdown_header(_context(floors))
    assert "akd 8.000, mkr 0.200 on the 2 scored test videos (the floor row)" in header
    assert "akd 4.667, mkr 0.111 on all of them" in header


def test_the_header_names_the_evaluator_that_scored():
    header = markdown_header(_context(scored_floors({"pose": POSE}, ["a"])))
    assert (
        "pose evaluator `synthetic_pose` (trained 400 steps, batch 32, seed 0: "
        "synthetic_pose-0123456789ab.pth)" in header
    )


def test_a_scored_floor_with_no_frames_is_nan_not_an_error():
    assert math.isnan(scored_floors({"pose": POSE}, ["z"])["pose"]["scored_floor"]["akd"])


def test_rows_trained_alike_are_one_phrase_and_rows_trained_apart_are_each_named():
    alike = {
        "FOMM": {"threads": 1, "runs_at_once": [2]},
        "X2Face": {"threads": 1, "runs_at_once": [2]},
    }
    header = markdown_header(_context({}, {"training": alike}))
    assert "trained 2 runs at a time, 1 thread each" in header
    apart = {**alike, "X2Face": {"threads": 2, "runs_at_once": [1]}}
    header = markdown_header(_context({}, {"training": apart}))
    assert "FOMM 1 thread, 2 runs at a time; X2Face 2 threads, alone" in header
    one_at_a_time = {"FOMM": {"threads": 2, "runs_at_once": [1]}}
    assert "at a time" not in markdown_header(_context({}, {"training": one_at_a_time}))


def test_unreadable_test_videos_are_named():
    header = markdown_header(_context({}, dataset={"unreadable_test_videos": ["v1", "v2"]}))
    assert "2 test videos could not be read and are left out of every row: v1, v2" in header
