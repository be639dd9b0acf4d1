"""The evaluation protocol against the public pose-evaluation scripts' logic.

The scripts (`cmp_with_missing.py` for bodies, `cmp_kp.py` for face landmarks, `cmp.py` for
identity embeddings) sort both tables by (file_name, frame_number), pair row i with row i, and
average one value per frame over every frame of every video. Their logic is written out below
from that description, and kptoolkit's table scoring must agree with it to 1e-9 on videos of
unequal length, with joints missing in the real frame, the generated one and both, and with
None rows (nothing detected).
"""

from __future__ import annotations

import numpy as np
import pytest

from kptoolkit.cli.main import main
from kptoolkit.engine.evaluate import EvaluationError, evaluate_tables
from kptoolkit.errors import KptoolkitError
from kptoolkit.metrics.tables import export_table, import_table
from kptoolkit.registry.registries import create_metric

pytest.importorskip("pandas")

LENGTHS = {"a#1": 7, "b#2": 2, "c#3": 12}  # unequal: pooling and per-video means differ
JOINTS = 18


def _rows(table: dict[str, list]) -> list[tuple[str, int, object]]:
    return [(name, i, value) for name, values in table.items() for i, value in enumerate(values)]


def _sorted_rows(path):
    import pandas as pd

    frame = pd.read_pickle(path).sort_values(by=["file_name", "frame_number"])
    return list(zip(frame["file_name"], frame["frame_number"], frame["value"], strict=True))


def script_body_pose(real_path, fake_path) -> tuple[float, float]:
    """AKD and MKR as `cmp_with_missing.py` computes them (by hand, from its definition)."""
    akd, mkr = [], []
    for (name_r, frame_r, gt), (name_f, frame_f, pred) in zip(
        _sorted_rows(real_path), _sorted_rows(fake_path), strict=True
    ):
        assert name_r.split(".")[0] == name_f.split(".")[0] and frame_r == frame_f
        gt_missing, pred_missing = gt[:, 0] == -1, pred[:, 0] == -1
        both = ~gt_missing & ~pred_missing
        lost = ~gt_missing & pred_missing
        real_present = JOINTS - gt_missing.sum()
        if real_present != 0:
            mkr.append(lost.sum() / real_present)
        if both.sum() != 0:
            akd.append(np.mean(np.abs(gt[both] - pred[both]).astype(float)))
    return float(np.mean(akd)), float(np.mean(mkr))


def script_face_pose(real_path, fake_path) -> float:
    """AKD as `cmp_kp.py` computes it: every frame whose generated value is not None."""
    scores = []
    for (name_r, frame_r, real), (name_f, frame_f, fake) in zip(
        _sorted_rows(real_path), _sorted_rows(fake_path), strict=True
    ):
        assert name_r.split(".")[0] == name_f.split(".")[0] and frame_r == frame_f
        if fake is not None:
            scores.append(np.mean(np.abs(real - fake).astype(float)))
    return float(np.mean(scores))


def script_identity(real_path, fake_path) -> float:
    """AED as `cmp.py` computes it: per frame the sum of squared differences."""
    scores = []
    for (_, _, real), (_, _, fake) in zip(
        _sorted_rows(real_path), _sorted_rows(fake_path), strict=True
    ):
        scores.append(np.sum(np.abs(real - fake).astype(float) ** 2))
    return float(np.mean(scores))


def body_tables(tmp_path):
    """Random 18-joint tables; joints missing (x = -1, y kept) in real, fake and both."""
    rng = np.random.default_rng(0)
    real, fake = {}, {}
    for name, length in LENGTHS.items():
        gt = rng.uniform(0, 255, (length, JOINTS, 2))
        pred = gt + rng.normal(0, 4, gt.shape)
        gt_missing = rng.random((length, JOINTS)) < 0.2
        pred_missing = rng.random((length, JOINTS)) < 0.3
        gt[..., 0][gt_missing] = -1  # only x marks a missing joint
        pred[..., 0][pred_missing] = -1
        pred[0, :, 0] = -1  # a frame with every generated joint missing
        real[f"{name}.mp4"], fake[f"{name}.png"] = list(gt), list(pred)
    real["b#2.mp4"][1][:, 0] = -1  # a frame with no real joint: left out of both metrics
    paths = tmp_path / "pose_gt.pkl", tmp_path / "pose_gen.pkl"
    export_table(_rows(real), paths[0])
    export_table(_rows(fake), paths[1])
    return paths


def test_body_akd_and_mkr_equal_the_scripts_logic(tmp_path):
    real_path, fake_path = body_tables(tmp_path)
    metrics = {"akd": create_metric("akd"), "mkr": create_metric("mkr")}
    evaluation = evaluate_tables(real_path, fake_path, metrics)
    akd, mkr = script_body_pose(real_path, fake_path)
    assert evaluation.values()["akd"] == pytest.approx(akd, abs=1e-9, rel=0)
    assert evaluation.values()["mkr"] == pytest.approx(mkr, abs=1e-9, rel=0)
    # per-video averaging is another number on videos of unequal length
    assert abs(evaluation.values("videos")["akd"] - akd) > 1e-4
    assert evaluation.scores["akd"].names == ("a#1", "b#2", "c#3")


def test_face_akd_skips_none_rows_as_the_script_does(tmp_path):
    rng = np.random.default_rng(1)
    real, fake = {}, {}
    for name, length in LENGTHS.items():
        landmarks = rng.uniform(0, 255, (length, 68, 2))
        real[f"{name}.mp4"] = list(landmarks)
        fake[f"{name}.png"] = list(landmarks + rng.normal(0, 3, landmarks.shape))
    fake["a#1.png"][2] = None  # no face found in a generated frame
    fake["c#3.png"][0] = fake["c#3.png"][5] = None
    real_path, fake_path = tmp_path / "real.pkl", tmp_path / "fake.pkl"
    export_table(_rows(real), real_path)
    export_table(_rows(fake), fake_path)
    assert import_table(fake_path)["a#1.png"][2] is None  # None stays None, not a 0-d array
    metrics = {"akd": create_metric("akd"), "mkr": create_metric("mkr")}
    evaluation = evaluate_tables(real_path, fake_path, metrics)
    assert evaluation.values()["akd"] == pytest.approx(
        script_face_pose(real_path, fake_path), abs=1e-9, rel=0
    )
    # MKR (not computed by cmp_kp.py): a frame with no generated face lost all its landmarks
    assert evaluation.values()["mkr"] == pytest.approx(3 / sum(LENGTHS.values()), abs=1e-12)


def test_aed_equals_the_scripts_logic(tmp_path):
    rng = np.random.default_rng(2)
    real = {f"{n}.mp4": list(rng.normal(size=(k, 128))) for n, k in LENGTHS.items()}
    fake = {f"{n}.png": [v + rng.normal(0, 0.3, 128) for v in real[f"{n}.mp4"]] for n in LENGTHS}
    real_path, fake_path = tmp_path / "id_gt.pkl", tmp_path / "id_gen.pkl"
    export_table(_rows(real), real_path)
    export_table(_rows(fake), fake_path)
    evaluation = evaluate_tables(real_path, fake_path, {"aed": create_metric("aed")})
    assert evaluation.values()["aed"] == pytest.approx(
        script_identity(real_path, fake_path), abs=1e-9, rel=0
    )


def test_metrics_command_scores_tables(tmp_path, capsys):
    real_path, fake_path = body_tables(tmp_path)
    args = ["metrics", "--real-table", str(real_path), "--fake-table", str(fake_path)]
    assert main(args) == 0
    lines = dict(line.split()[:2] for line in capsys.readouterr().out.splitlines()[:2])
    akd, mkr = script_body_pose(real_path, fake_path)
    assert float(lines["akd"]) == pytest.approx(akd, abs=1e-6)
    assert float(lines["mkr"]) == pytest.approx(mkr, abs=1e-6)
    assert main([*args, "--metrics", "l1"]) == 1  # a pixel metric needs frames
    assert "needs frames" in capsys.readouterr().err
    assert main(["metrics", "--real-table", str(real_path)]) == 1
    assert "--fake-table" in capsys.readouterr().err


def test_table_errors(tmp_path):
    real_path, _ = body_tables(tmp_path)
    embeddings = tmp_path / "id.pkl"
    export_table([("a#1.png", 0, np.zeros(8))], embeddings)
    with pytest.raises(EvaluationError, match=r"joints per frame and .* embeddings"):
        evaluate_tables(real_path, embeddings, {"akd": create_metric("akd")})
    with pytest.raises(EvaluationError, match=r"needs a pose evaluator \(the tables hold identity"):
        evaluate_tables(embeddings, embeddings, {"akd": create_metric("akd")})
    empty = tmp_path / "none.pkl"
    export_table([("a#1.png", 0, None)], empty)
    with pytest.raises(KptoolkitError, match="no value at all"):
        evaluate_tables(empty, empty, {"aed": create_metric("aed")})
