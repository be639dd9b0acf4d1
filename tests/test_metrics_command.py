"""`kptoolkit metrics`: folder-against-folder scoring, paired by video name."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from video_fixtures import level_frames, make_video

from kptoolkit import EVALUATORS
from kptoolkit.cli.main import main
from kptoolkit.engine.evaluate import EvaluationError, evaluate_folders
from kptoolkit.registry.registries import create_metric


def make_folders(tmp_path, offset=10):
    real, fake = tmp_path / "real", tmp_path / "png"
    real.mkdir()
    fake.mkdir()
    for name, count in (("a#1", 4), ("b#1", 6)):
        make_video(real / name, "frames", count=count)
        shifted = level_frames(count, offset=offset)  # every pixel off by `offset` levels
        Image.fromarray(np.concatenate(list(shifted), axis=1)).save(fake / f"{name}.png")
    make_video(real / "c#1", "frames", count=3)  # no generated counterpart
    return real, fake


def test_l1_over_stacked_pngs(tmp_path, capsys):
    real, fake = make_folders(tmp_path)
    metrics = {"l1": create_metric("l1"), "psnr": create_metric("psnr")}
    evaluation = evaluate_folders(real, fake, metrics, progress=False)
    scores = evaluation.values()
    assert scores["l1"] == pytest.approx(10 / 255, abs=1e-6)
    assert scores["psnr"] == pytest.approx(20 * np.log10(255 / 10), abs=1e-3)
    assert evaluation.missing == ["c#1"]
    assert evaluation.scores["l1"].names == ("a#1", "b#1")
    assert evaluation.scores["l1"].counts.tolist() == [4, 6]
    assert main(["metrics", "--real", str(real), "--fake", str(fake), "--metrics", "l1"]) == 0
    out = capsys.readouterr().out
    assert "0.0392" in out and "c#1" in out


class BrightnessPose(torch.nn.Module):
    """Test evaluator: one 'joint' whose x is 100 x the frame's mean brightness."""

    kind = "pose"

    def __init__(self, scale: float = 100.0):
        super().__init__()
        self.scale = scale

    def keypoints(self, frames):
        x = frames.mean(dim=(1, 2, 3)) * self.scale
        return torch.stack([x, torch.zeros_like(x)], dim=-1)[:, None]


def test_pose_metrics_through_an_evaluator(tmp_path, capsys):
    real, fake = make_folders(tmp_path, offset=20)
    EVALUATORS.register("brightness_pose")(BrightnessPose)
    try:
        args = ["metrics", "--real", str(real), "--fake", str(fake)]
        assert main([*args, "--evaluator", "brightness_pose", "--evaluator-set", "scale=255"]) == 0
    finally:
        EVALUATORS.unregister("brightness_pose")
    lines = dict(line.split() for line in capsys.readouterr().out.splitlines()[:5])
    assert float(lines["akd"]) == pytest.approx(10.0, abs=1e-3)  # (20 levels) / 255 * 255 / 2
    assert float(lines["mkr"]) == 0.0


class CountingPose(BrightnessPose):
    """BrightnessPose that counts the frames it has seen."""

    def __init__(self):
        super().__init__(255.0)
        self.frames = 0

    def keypoints(self, frames):
        self.frames += frames.shape[0]
        return super().keypoints(frames)


def test_a_shared_real_cache_evaluates_each_real_frame_once(tmp_path):
    """The bench scores many generated folders against one real folder: with `real_cache` the
    evaluator sees the real frames once, and the scores do not change."""
    real, fake = make_folders(tmp_path, offset=20)
    (tmp_path / "second").mkdir()
    _, other = make_folders(tmp_path / "second", offset=40)
    evaluator, cache = CountingPose(), {}
    scores = []
    for folder in (fake, other, fake):
        metrics = {"akd": create_metric("akd")}
        evaluation = evaluate_folders(
            real, folder, metrics, [evaluator], batch_size=3, progress=False, real_cache=cache
        )
        scores.append(evaluation.values()["akd"])
    # 10 real frames once, then 10 generated frames per call
    assert evaluator.frames == 10 + 3 * 10
    assert scores[0] == pytest.approx(10.0, abs=1e-3) and scores[1] == pytest.approx(20.0, 1e-3)
    assert scores[2] == scores[0]
    uncached = CountingPose()
    evaluate_folders(real, fake, {"akd": create_metric("akd")}, [uncached], progress=False)
    assert uncached.frames == 20


def test_exported_tables_give_the_same_numbers(tmp_path, capsys):
    """kptoolkit's evaluator outputs, written as pose-evaluation tables, score the same through
    the table path (and through the scripts' logic, in test_protocol)."""
    pytest.importorskip("pandas")
    real, fake = make_folders(tmp_path, offset=20)
    tables = tmp_path / "tables"
    EVALUATORS.register("brightness_pose")(BrightnessPose)
    try:
        metrics = {"akd": create_metric("akd"), "mkr": create_metric("mkr")}
        evaluation = evaluate_folders(
            real, fake, metrics, [BrightnessPose(255.0)], progress=False, export_tables=tables
        )
    finally:
        EVALUATORS.unregister("brightness_pose")
    assert sorted(p.name for p in evaluation.tables) == ["pose_gen.pkl", "pose_gt.pkl"]
    from kptoolkit.engine.evaluate import evaluate_tables
    from kptoolkit.metrics.tables import import_table

    assert list(import_table(tables / "pose_gen.pkl")) == ["a#1.png", "b#1.png"]
    again = evaluate_tables(
        tables / "pose_gt.pkl",
        tables / "pose_gen.pkl",
        {"akd": create_metric("akd"), "mkr": create_metric("mkr")},
    )
    assert again.values() == pytest.approx(evaluation.values(), abs=1e-9)
    assert again.scores["akd"].counts.tolist() == [4, 6]


def test_errors(tmp_path):
    real, fake = make_folders(tmp_path)
    with pytest.raises(EvaluationError, match="pose evaluator"):
        evaluate_folders(real, fake, {"akd": create_metric("akd")}, progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EvaluationError, match="no video names in common"):
        evaluate_folders(real, empty, {"l1": create_metric("l1")}, progress=False)
