"""Metrics: hand-computed per-frame values, pooled and per-video averaging, per-video states,
distributed gathering, tables."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist

from kptoolkit.errors import ConfigError, KptoolkitError
from kptoolkit.metrics.base import FramePairs, Metric, VideoScores
from kptoolkit.metrics.image_metrics import L1Metric, LpipsMetric, PsnrMetric, SsimMetric
from kptoolkit.metrics.keypoint_metrics import AedMetric, AkdMetric, MkrMetric, present
from kptoolkit.metrics.tables import export_table, import_table

M = -1.0  # a missing coordinate


def constant(*values: float, size: int = 32) -> torch.Tensor:
    """(len(values), 3, size, size) frames, each filled with one value."""
    return torch.tensor(values).view(-1, 1, 1, 1).expand(-1, 3, size, size).clone()


def pairs(real: list[float], fake: list[float]) -> FramePairs:
    return FramePairs(real=constant(*real), fake=constant(*fake))


def score(metric: Metric, *videos: FramePairs | list[FramePairs]) -> float:
    for video in videos:
        for batch in video if isinstance(video, list) else [video]:
            metric.update(batch)
        metric.end_video()
    return metric.compute()


def test_l1_is_the_mean_absolute_difference():
    torch.manual_seed(0)
    real, fake = torch.rand(2, 2, 3, 16, 16).unbind(0)
    metric = L1Metric()
    values = metric(FramePairs(real, fake))
    torch.testing.assert_close(values, (real - fake).abs().mean(dim=(1, 2, 3)))
    assert score(metric, pairs([0.2, 0.5], [0.3, 0.1])) == pytest.approx((0.1 + 0.4) / 2)
    assert not L1Metric.higher_is_better and L1Metric.requires == frozenset()


def test_psnr_of_a_constant_error():
    metric = PsnrMetric()
    # errors 0.1 and 0.01: MSE 1e-2 and 1e-4, so 20 dB and 40 dB
    torch.testing.assert_close(
        metric(pairs([0.2, 0.5], [0.3, 0.49])).double(),
        torch.tensor([20.0, 40.0], dtype=torch.float64),
        atol=1e-3,
        rtol=0,
    )
    assert score(metric, pairs([0.2, 0.5], [0.3, 0.49])) == pytest.approx(30.0, abs=1e-3)
    assert PsnrMetric.higher_is_better


def test_ssim_of_identical_and_constant_frames():
    torch.manual_seed(0)
    frames = torch.rand(2, 3, 32, 32)
    metric = SsimMetric()
    torch.testing.assert_close(metric(FramePairs(frames, frames)), torch.ones(2))
    # constant frames have no variance: SSIM = (2ab + C1) / (a^2 + b^2 + C1), C1 = 0.01^2
    expected = (2 * 0.2 * 0.4 + 1e-4) / (0.2**2 + 0.4**2 + 1e-4)
    assert score(metric, pairs([0.2], [0.4])) == pytest.approx(expected, abs=1e-5)
    assert SsimMetric.higher_is_better


def test_frames_are_pooled_over_videos_by_default():
    short = pairs([0.5], [0.6])  # one frame, L1 0.1
    long = [pairs([0.0, 0.2], [0.4, 0.6]), pairs([0.9], [0.5])]  # three frames, L1 0.4
    metric = L1Metric()
    pooled = score(metric, short, long)
    assert pooled == pytest.approx((0.1 + 3 * 0.4) / 4)  # the published protocol
    assert metric.compute("videos") == pytest.approx((0.1 + 0.4) / 2)  # per video first
    with pytest.raises(ValueError, match=r"frames.*videos"):
        metric.compute("clips")


def test_compute_needs_finished_videos_and_reset_forgets():
    metric = L1Metric()
    assert math.isnan(metric.compute())  # no video yet
    metric.update(pairs([0.5], [0.6]))
    with pytest.raises(RuntimeError, match="end_video"):
        metric.compute()
    metric.end_video("a")
    assert metric.compute() == pytest.approx(0.1)
    metric.reset()
    assert metric.videos == 0 and float(metric.frame_sum) == 0 and float(metric.frame_count) == 0
    assert score(metric, pairs([0.5], [0.8])) == pytest.approx(0.3)


def test_video_scores_keep_each_video_sum_and_count():
    metric = L1Metric()
    metric.update(pairs([0.5, 0.5], [0.6, 0.7]))
    metric.end_video("b#1")
    metric.update(pairs([0.0], [0.5]))
    metric.end_video("a#1")
    scores = metric.video_scores()
    assert scores.names == ("b#1", "a#1")
    np.testing.assert_allclose(scores.sums, [0.3, 0.5], atol=1e-7)
    np.testing.assert_array_equal(scores.counts, [2, 1])
    assert scores.sums.dtype == np.float64 and metric.frame_sum.dtype == torch.float64
    again = VideoScores.from_json(scores.to_json())
    assert again.names == scores.names and again.value("videos") == scores.value("videos")


# keypoints: 4 joints; a missing joint is (-1, -1)
REAL_KP = torch.tensor(
    [
        [[10, 20], [30, 40], [M, M], [5, 5]],
        [[M, M], [M, M], [M, M], [M, M]],  # no real joint: skipped by AKD and MKR
        [[0, 0], [10, 10], [20, 20], [30, 30]],
        [[1, 1], [M, M], [M, M], [M, M]],  # no joint in both: no AKD, MKR 1
    ]
)
FAKE_KP = torch.tensor(
    [
        [[12, 21], [M, M], [7, 7], [5, 9]],  # AKD (2+1+0+4)/4 = 1.75, MKR 1/3
        [[1, 1], [2, 2], [3, 3], [4, 4]],
        [[M, M], [M, M], [M, M], [33, 30]],  # AKD (3+0)/2 = 1.5, MKR 3/4
        [[M, M], [M, M], [M, M], [M, M]],
    ]
)


def keypoint_pairs(rows: slice = slice(None)) -> FramePairs:
    real_kp, fake_kp = REAL_KP[rows], FAKE_KP[rows]
    frames = constant(*[0.5] * len(real_kp), size=8)
    return FramePairs(frames, frames, real_keypoints=real_kp, fake_keypoints=fake_kp)


def test_a_joint_is_missing_when_its_x_is_minus_one():
    # cmp_with_missing.py: missing = (x == -1), whatever y holds
    found = present(torch.tensor([[[M, M], [M, 3.0], [3.0, M], [0.0, 0.0]]]))
    assert found.tolist() == [[False, False, True, True]]


def test_akd_over_joints_present_in_both():
    metric = AkdMetric()
    values = metric(keypoint_pairs())
    torch.testing.assert_close(values[[0, 2]], torch.tensor([1.75, 1.5], dtype=torch.float64))
    assert torch.isnan(values[[1, 3]]).all()
    assert score(metric, keypoint_pairs()) == pytest.approx((1.75 + 1.5) / 2)
    assert AkdMetric.requires == frozenset({"pose"}) and not AkdMetric.higher_is_better


def test_mkr_counts_real_joints_missing_in_fake():
    metric = MkrMetric()
    values = metric(keypoint_pairs())
    torch.testing.assert_close(
        values[[0, 2, 3]], torch.tensor([1 / 3, 3 / 4, 1.0], dtype=torch.float64)
    )
    assert torch.isnan(values[1])
    assert score(metric, keypoint_pairs()) == pytest.approx((1 / 3 + 3 / 4 + 1) / 3)


def test_video_without_valid_frame_is_ignored():
    metric = AkdMetric()
    # video 1: frames 1 and 3 only (no AKD value); video 2: frame 0 (1.75)
    assert score(metric, keypoint_pairs(slice(1, 4, 2)), keypoint_pairs(slice(0, 1))) == 1.75
    assert metric.compute("videos") == 1.75  # the empty video weighs nothing either way
    assert metric.videos == 2 and metric.video_scores().counts.tolist() == [0, 1]


def test_aed_is_the_squared_l2_distance():
    frames = constant(0.5, 0.5, size=8)
    real = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    fake = torch.tensor([[1.0, 0.0, 5.0], [3.0, 4.0, 0.0]])
    batch = FramePairs(frames, frames, real_embeddings=real, fake_embeddings=fake)
    metric = AedMetric()
    torch.testing.assert_close(metric(batch), torch.tensor([8.0, 25.0], dtype=torch.float64))
    assert score(metric, batch) == pytest.approx(16.5)  # not (sqrt(8) + 5) / 2
    assert AedMetric.requires == frozenset({"identity"})


def test_missing_detector_outputs_raise_clear_errors():
    batch = pairs([0.5], [0.5])
    with pytest.raises(ValueError, match="akd needs real_keypoints and fake_keypoints"):
        AkdMetric().update(batch)
    with pytest.raises(ValueError, match="mkr needs real_keypoints"):
        MkrMetric().update(batch)
    with pytest.raises(ValueError, match="aed needs real_embeddings and fake_embeddings"):
        AedMetric().update(batch)
    with pytest.raises(ValueError, match="do not match"):
        FramePairs(constant(0.5), constant(0.5, 0.5))


def test_sync_is_a_no_op_without_a_process_group():
    assert not dist.is_initialized()
    metric = L1Metric()
    score(metric, pairs([0.5], [0.6]))
    before = metric.video_scores()
    metric.sync()
    after = metric.video_scores()
    assert after.names == before.names and after.sums.tolist() == before.sums.tolist()


def _score_shard(rank: int, world: int, store_path: str, queue) -> None:
    """One process of a two-process evaluation: score its own videos, gather, compute."""
    store = dist.FileStore(store_path, world)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world)
    try:
        videos = [keypoint_pairs(slice(0, 2)), keypoint_pairs(slice(2, 4)), keypoint_pairs()]
        metric = MkrMetric()
        for index in range(rank, len(videos), world):  # rank 0: videos 0, 2; rank 1: video 1
            metric.update(videos[index])
            metric.end_video(f"v{index}")
        metric.sync()
        first = (metric.compute(), metric.compute("videos"), metric.video_scores().names)
        metric.sync()  # a second call changes nothing (it once added the other's videos again)
        again = (metric.compute(), metric.compute("videos"), metric.video_scores().names)
        queue.put((rank, *first, again == first, metric.videos))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_sync_gathers_the_videos_of_every_process(tmp_path):
    import torch.multiprocessing as mp

    videos = [keypoint_pairs(slice(0, 2)), keypoint_pairs(slice(2, 4)), keypoint_pairs()]
    alone = MkrMetric()
    for index in (0, 2, 1):
        alone.update(videos[index])
        alone.end_video(f"v{index}")
    context = mp.get_context("spawn")
    queue = context.Queue()
    mp.spawn(_score_shard, args=(2, str(tmp_path / "store"), queue), nprocs=2, join=True)
    results = sorted(queue.get(timeout=60) for _ in range(2))
    for _, pooled, per_video, names, same_again, count in results:
        assert names == ("v0", "v2", "v1")  # rank order
        assert same_again and count == 3
        assert pooled == pytest.approx(alone.compute(), abs=1e-12)
        assert per_video == pytest.approx(alone.compute("videos"), abs=1e-12)
    # by hand: frame MKRs 1/3 | 3/4, 1 | 1/3, 3/4, 1 (pooled over the 6 frames with a value)
    assert alone.compute() == pytest.approx((2 / 3 + 2 * (3 / 4 + 1)) / 6)


def test_lpips_with_random_weights():
    torch.manual_seed(0)
    metric = LpipsMetric(weights="random")
    frames = torch.rand(2, 3, 64, 64)
    assert score(metric, FramePairs(frames, frames)) == 0
    metric.reset()
    assert score(metric, FramePairs(frames, frames.flip(-1))) > 0
    assert not metric.lpips.training and not metric.train().training


def test_lpips_without_weights_says_what_to_provide():
    with pytest.raises(ConfigError, match=r"lpips metric needs .*AlexNet.*random"):
        LpipsMetric()


def test_tables_without_pandas_say_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pandas", None)  # makes `import pandas` fail
    with pytest.raises(KptoolkitError, match="pip install pandas"):
        export_table([("a.mp4", 0, np.zeros(2))], tmp_path / "table.pkl")
    with pytest.raises(KptoolkitError, match="pip install pandas"):
        import_table(tmp_path / "table.pkl")


def test_tables_round_trip_in_frame_order(tmp_path):
    pd = pytest.importorskip("pandas")
    path = tmp_path / "pose.pkl"
    kp = [np.full((18, 2), float(i)) for i in range(3)]
    export_table([("b.mp4", 1, kp[1]), ("a.mp4", 0, kp[2]), ("b.mp4", 0, kp[0])], path)
    frame = pd.read_pickle(path)
    assert list(frame.columns) == ["file_name", "frame_number", "value"]
    table = import_table(path)
    assert list(table) == ["a.mp4", "b.mp4"]
    assert list(table["b.mp4"]) == [0, 1]  # frame numbers, sorted
    assert [v[0, 0] for v in table["b.mp4"].values()] == [0.0, 1.0]
    np.testing.assert_array_equal(table["a.mp4"][0], kp[2])


def test_tables_reject_duplicates_and_other_pickles(tmp_path):
    pd = pytest.importorskip("pandas")
    path = tmp_path / "dup.pkl"
    export_table([("a.mp4", 0, np.zeros(2)), ("a.mp4", 0, np.ones(2))], path)
    with pytest.raises(KptoolkitError, match="appears twice"):
        import_table(path)
    pd.DataFrame({"x": [1]}).to_pickle(tmp_path / "other.pkl")
    with pytest.raises(KptoolkitError, match="not a pose-evaluation table"):
        import_table(tmp_path / "other.pkl")
    with pytest.raises(KptoolkitError, match="not found"):
        import_table(tmp_path / "missing.pkl")
