"""Synthetic evaluators: output conventions, caching, determinism, learning, floors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from kptoolkit.data.puppets.model import JOINT_NAMES
from kptoolkit.data.puppets.writer import generate_dataset
from kptoolkit.evaluators.base import Evaluator
from kptoolkit.evaluators.synthetic import SyntheticIdEvaluator, SyntheticPoseEvaluator, pose_scores
from kptoolkit.evaluators.synthetic_training import load_split
from kptoolkit.metrics.base import VideoScores

POSE_STEPS = 80
ID_STEPS = 4


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("puppets") / "data"
    # two clips per identity and half the videos in test: two train and two test identities
    generate_dataset(
        root,
        videos=8,
        frames=6,
        size=64,
        workers=1,
        progress=False,
        clips_per_identity=2,
        test_fraction=0.5,
    )
    return str(root)


@pytest.fixture(scope="module")
def pose(dataset: str) -> SyntheticPoseEvaluator:
    return SyntheticPoseEvaluator(dataset, steps=POSE_STEPS, batch_size=16, progress=False)


@pytest.fixture(scope="module")
def identity(dataset: str) -> SyntheticIdEvaluator:
    return SyntheticIdEvaluator(dataset, steps=ID_STEPS, batch_size=8, progress=False)


def _frames(root: str, split: str = "train") -> tuple[torch.Tensor, dict]:
    data = load_split(root, split)
    return torch.from_numpy(data["frames"]).permute(0, 3, 1, 2).float() / 255, data


@pytest.mark.slow
def test_pose_output_conventions(pose: SyntheticPoseEvaluator, dataset: str) -> None:
    assert isinstance(pose, Evaluator) and pose.kind == "pose"
    frames, _ = _frames(dataset)
    points = pose.keypoints(frames[:5])
    assert points.shape == (5, len(JOINT_NAMES), 2) and points.dtype == torch.float32
    missing = (points == -1).all(-1)
    present = points[~missing]
    assert ((present >= -0.5) & (present <= 63.5)).all()
    # partly -1 is all -1: a joint is either present (both coordinates) or missing
    assert ((points == -1).any(-1) == missing).all()
    with pytest.raises(ValueError):
        pose.keypoints(frames[0])
    with pytest.raises(TypeError):
        pose.embeddings(frames[:1])
    # a larger frame: coordinates scale with it
    big = torch.nn.functional.interpolate(frames[:2], scale_factor=2, mode="bilinear")
    scaled = pose.keypoints(big)
    both = ~(scaled == -1).all(-1) & ~(pose.keypoints(frames[:2]) == -1).all(-1)
    assert both.any()
    ratio = (scaled[both] + 0.5) / (pose.keypoints(frames[:2])[both] + 0.5)
    assert torch.allclose(ratio.median(), torch.tensor(2.0), atol=0.2)


@pytest.mark.slow
def test_missing_when_not_visible(pose: SyntheticPoseEvaluator, dataset: str) -> None:
    frames, _ = _frames(dataset)
    with torch.no_grad():
        pose.visibility.bias.data -= 1e3  # every joint judged missing
    try:
        assert (pose.keypoints(frames[:3]) == -1).all()
    finally:
        with torch.no_grad():
            pose.visibility.bias.data += 1e3


@pytest.mark.slow
def test_pose_learns(pose: SyntheticPoseEvaluator, dataset: str) -> None:
    assert pose.trained
    _, data = _frames(dataset)
    visible = data["visible"]
    mean = (data["joints"] * visible[..., None]).sum(0) / visible.sum(0)[:, None]
    baseline = pose_scores(data["joints"], visible, np.broadcast_to(mean, data["joints"].shape))
    scores = pose.floor("train")
    assert scores["akd"] < 0.6 * baseline["akd"], (scores, baseline)
    assert scores["mkr"] < 0.2


def test_pose_scores_definition() -> None:
    gt = np.zeros((2, 3, 2), np.float32)
    visible = np.array([[True, True, False], [True, False, False]])
    pred = np.array(
        [[[1, 3], [-1, -1], [5, 5]], [[2, 2], [0, 0], [0, 0]]], dtype=np.float32
    )  # frame 0: joint 0 off by (1, 3), joint 1 missing; frame 1: joint 0 off by (2, 2)
    scores = pose_scores(gt, visible, pred)
    assert scores["akd"] == pytest.approx((2.0 + 2.0) / 2)
    assert scores["mkr"] == pytest.approx((0.5 + 0.0) / 2)


@pytest.mark.slow
def test_cache_reused_and_another_recipe_never_replaces_it(
    pose: SyntheticPoseEvaluator, dataset: str
) -> None:
    path = pose.cache_path
    assert path.parent == pose.root / "evaluators" and path.is_file()
    assert path.name.startswith("synthetic_pose-")  # named by its recipe
    stamp = path.stat().st_mtime_ns
    again = SyntheticPoseEvaluator(dataset, steps=POSE_STEPS, batch_size=16, progress=False)
    assert not again.trained and path.stat().st_mtime_ns == stamp
    frames, _ = _frames(dataset)
    assert torch.equal(again.keypoints(frames[:4]), pose.keypoints(frames[:4]))
    # another recipe (as `kptoolkit metrics` with its own steps trains) gets its own file: the
    # first evaluator's file is untouched and still read, and so is the other's
    other = SyntheticPoseEvaluator(dataset, steps=2, batch_size=4, progress=False)
    assert other.trained and other.cache_path != path
    assert path.stat().st_mtime_ns == stamp
    assert not SyntheticPoseEvaluator(dataset, steps=POSE_STEPS, batch_size=16).trained
    assert not SyntheticPoseEvaluator(dataset, steps=2, batch_size=4, progress=False).trained
    assert not list(path.parent.glob(".*.tmp"))
    # a corrupt cache is retrained; restore the module fixture's cache afterwards
    saved = path.read_bytes()
    path.write_bytes(b"not a checkpoint")
    assert SyntheticPoseEvaluator(dataset, steps=POSE_STEPS, batch_size=16, progress=False).trained
    path.write_bytes(saved)


@pytest.mark.slow
def test_a_cache_of_an_earlier_version_is_read_when_it_holds_this_evaluator(
    pose: SyntheticPoseEvaluator, dataset: str, tmp_path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(dataset, copy, ignore=shutil.ignore_patterns("evaluators"))
    shared = copy / "evaluators" / "synthetic_pose.pth"  # one file per name, as before
    shared.parent.mkdir()
    torch.save({"metadata": {**pose.metadata}, "state": pose.state_dict()}, shared)
    fingerprint = pose.metadata["dataset"]
    loaded = SyntheticPoseEvaluator(str(copy), steps=POSE_STEPS, batch_size=16, progress=False)
    assert loaded.metadata["dataset"] == fingerprint  # the copy is the same dataset
    assert not loaded.trained and loaded.cache_path == shared
    # another recipe does not read it, and does not write over it
    stamp = shared.stat().st_mtime_ns
    other = SyntheticPoseEvaluator(str(copy), steps=2, batch_size=4, progress=False)
    assert other.trained and other.cache_path != shared and shared.stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_determinism_under_seed(dataset: str, tmp_path) -> None:
    outputs = []
    for seed in (3, 3, 4):
        copy = tmp_path / f"copy{len(outputs)}"
        shutil.copytree(dataset, copy, ignore=shutil.ignore_patterns("evaluators"))
        model = SyntheticPoseEvaluator(str(copy), steps=3, batch_size=4, seed=seed, progress=False)
        assert model.trained
        outputs.append(model.state_dict())
    same = all(torch.equal(outputs[0][k], outputs[1][k]) for k in outputs[0])
    differ = any(not torch.equal(outputs[0][k], outputs[2][k]) for k in outputs[0])
    assert same and differ


@pytest.mark.slow
def test_identity_embeddings(identity: SyntheticIdEvaluator, dataset: str) -> None:
    assert identity.kind == "identity"
    frames, _ = _frames(dataset, "test")
    embeddings = identity.embeddings(frames[:6])
    assert embeddings.shape == (6, identity.embedding_dim)
    assert torch.allclose(embeddings.norm(dim=-1), torch.ones(6), atol=1e-5)
    with pytest.raises(TypeError):
        identity.keypoints(frames[:1])
    assert identity.cache_path.name.startswith("synthetic_id-") and identity.cache_path.is_file()
    again = SyntheticIdEvaluator(dataset, steps=ID_STEPS, batch_size=8, progress=False)
    assert not again.trained
    assert torch.equal(again.embeddings(frames[:6]), embeddings)


@pytest.mark.slow
def test_floors_keys(pose: SyntheticPoseEvaluator, identity: SyntheticIdEvaluator) -> None:
    floor = pose.floor()
    assert set(floor) == {"akd", "mkr", "frames", "per_video"}
    assert floor["frames"] > 0 and floor["akd"] >= 0 and 0 <= floor["mkr"] <= 1
    for metric in ("akd", "mkr"):  # the per-video sums pool back to the floor's value
        per_video = VideoScores.from_json(floor["per_video"][metric])
        assert per_video.value("frames") == pytest.approx(floor[metric], abs=1e-12)
        assert per_video.counts.sum() <= floor["frames"]
    id_floor = identity.floor()
    assert set(id_floor) == {"heldout_accuracy", "aed_same", "aed_different"}
    assert 0 <= id_floor["heldout_accuracy"] <= 1
    assert 0 <= id_floor["aed_same"] <= 4 and 0 <= id_floor["aed_different"] <= 4
