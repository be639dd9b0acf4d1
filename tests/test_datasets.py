"""FOMM-layout datasets: splits, training pairs, id sampling, pairs CSV, corrupt-file skipping."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from video_fixtures import frame_index, make_video

import kptoolkit.data.datasets as datasets_module
from kptoolkit.data.datasets import AnimationPairs, FramesDataset, SkippedVideoWarning
from kptoolkit.data.layout import DatasetLayoutError, discover_videos, fallback_split
from kptoolkit.data.video_io import VideoReadError


def index_of(tensor: torch.Tensor, offset: int = 0) -> int:
    return frame_index((tensor.permute(1, 2, 0).numpy() * 255), offset)


def make_split_dataset(root, kind="frames", train=("a#1", "a#2", "b#1"), test=("c#1",), count=8):
    for split, names in (("train", train), ("test", test)):
        (root / split).mkdir(parents=True, exist_ok=True)
        for name in names:
            make_video(root / split / name, kind, count=count)
    return root


@pytest.mark.parametrize("kind", ["frames", "stacked", "mp4", "gif"])
def test_training_pairs_are_two_distinct_frames_in_time_order(tmp_path, kind):
    dataset = FramesDataset(make_split_dataset(tmp_path, kind), "train")
    assert len(dataset) == 3
    for index in range(len(dataset)):
        item = dataset[index]
        assert item["source"].shape == item["driving"].shape == (3, 16, 16)
        assert item["source"].dtype == torch.float32 and item["source"].max() <= 1
        first, second = item["frame_indices"].tolist()
        assert first < second
        assert (index_of(item["source"]), index_of(item["driving"])) == (first, second)


def test_items_depend_on_seed_epoch_and_index_only(tmp_path):
    root = make_split_dataset(tmp_path, count=30)
    a, b = FramesDataset(root, seed=1), FramesDataset(root, seed=1)
    assert all(torch.equal(a[i]["frame_indices"], b[i]["frame_indices"]) for i in range(3))
    drawn = set()
    for epoch in range(4):
        a.set_epoch(epoch)
        drawn.add(tuple(a[0]["frame_indices"].tolist()))
    assert len(drawn) > 1
    serial = [x["frame_indices"] for x in DataLoader(FramesDataset(root), batch_size=1)]
    parallel = [
        x["frame_indices"] for x in DataLoader(FramesDataset(root), batch_size=1, num_workers=2)
    ]
    assert all(torch.equal(s, p) for s, p in zip(serial, parallel, strict=True))


def test_test_split_gives_whole_videos(tmp_path):
    dataset = FramesDataset(make_split_dataset(tmp_path, "mp4", count=6), "test")
    item = dataset[0]
    assert item["video"].shape == (3, 6, 16, 16) and item["name"] == "c#1"
    assert [index_of(item["video"][:, t]) for t in range(6)] == list(range(6))
    capped = FramesDataset(tmp_path, "test", max_frames=4)[0]["video"]
    assert capped.shape[1] == 4


def test_frames_are_resized_to_frame_size(tmp_path):
    dataset = FramesDataset(make_split_dataset(tmp_path), "train", frame_size=8)
    assert dataset[0]["source"].shape == (3, 8, 8)


def test_id_sampling_walks_identities(tmp_path):
    root = make_split_dataset(tmp_path, train=("a#1", "a#2", "a#3", "b#1"))
    dataset = FramesDataset(root, "train", id_sampling=True, repeats=3)
    assert dataset.identities == ["a", "b"] and len(dataset) == 6
    names = [dataset[i]["name"] for i in range(len(dataset))]
    assert [n.split("#")[0] for n in names] == ["a", "b"] * 3
    for epoch in range(1, 6):
        dataset.set_epoch(epoch)
        names += [dataset[0]["name"]]
    assert len({n for n in names if n.startswith("a")}) > 1  # random clips of identity a


def test_fallback_split_is_80_20_seeded_and_disjoint(tmp_path):
    for i in range(10):
        make_video(tmp_path / f"v{i:02d}", "frames", count=3)
    train = [v.name for v in discover_videos(tmp_path, "train")]
    test = [v.name for v in discover_videos(tmp_path, "test")]
    assert len(train) == 8 and len(test) == 2 and not set(train) & set(test)
    assert sorted(train + test) == [f"v{i:02d}" for i in range(10)]
    expected_test = np.random.RandomState(0).permutation(10)[:2]
    assert sorted(test) == sorted(f"v{i:02d}" for i in expected_test)
    assert fallback_split(["a"]) == ([0], [])


def test_layout_errors(tmp_path):
    with pytest.raises(DatasetLayoutError, match="not found"):
        discover_videos(tmp_path / "missing", "train")
    (tmp_path / "train").mkdir()
    with pytest.raises(DatasetLayoutError, match="no 'test' folder"):
        discover_videos(tmp_path, "test")
    with pytest.raises(DatasetLayoutError, match="no videos"):
        discover_videos(tmp_path, "train")


@pytest.mark.parametrize("kind", ["frames", "mp4"])
def test_corrupt_video_is_skipped_with_one_warning_and_counted(tmp_path, kind):
    root = make_split_dataset(tmp_path, kind, train=("a#1", "b#1", "c#1"))
    if kind == "frames":
        bad = root / "train" / "b#1" / "0000000.png"
        bad.write_bytes(b"\x89PNG broken")
        for png in (root / "train" / "b#1").glob("*.png"):
            png.write_bytes(png.read_bytes()[:30])
    else:
        bad = root / "train" / "b#1.mp4"
        bad.write_bytes(bad.read_bytes()[:200])
    dataset = FramesDataset(root, "train")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        names = [dataset[i]["name"] for i in range(len(dataset)) for _ in range(2)]
    skipped = [w for w in caught if issubclass(w.category, SkippedVideoWarning)]
    assert len(skipped) == 1 and "b#1" in str(skipped[0].message)
    assert "b#1" not in names and names[2] == "c#1"  # the next video stands in
    assert dataset.skipped == 2


def test_skips_are_counted_across_loader_workers(tmp_path):
    root = make_split_dataset(tmp_path, "mp4", train=("a#1", "b#1", "c#1", "d#1"))
    bad = root / "train" / "b#1.mp4"
    bad.write_bytes(bad.read_bytes()[:200])
    dataset = FramesDataset(root, "train", repeats=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        list(DataLoader(dataset, batch_size=4, num_workers=2))
    assert dataset.skipped == 4


def test_animation_pairs_from_csv_and_random(tmp_path):
    root = make_split_dataset(tmp_path, test=("x#1", "y#1", "z#1"))
    csv = tmp_path / "pairs.csv"
    csv.write_text("distance,source,driving,frame\n0,x#1.mp4,z#1.mp4,0\n0,y#1,x#1,0\n")
    test_set = FramesDataset(root, "test")
    pairs = AnimationPairs(test_set, csv)
    assert [(s.name, d.name) for s, d in pairs.pairs] == [("x#1", "z#1"), ("y#1", "x#1")]
    item = pairs[0]
    assert item["source"].shape == (3, 16, 16) and index_of(item["source"]) == 0
    assert sum(1 for _ in item["driving_frames"]) == 8
    random_a = AnimationPairs(test_set, count=5).pairs
    random_b = AnimationPairs(test_set, count=5).pairs
    assert len(random_a) == 5 and random_a == random_b
    assert len(AnimationPairs(test_set, count=100)) == 9
    csv.write_text("distance,source,driving,frame\n0,x#1,nope,0\n")
    with pytest.raises(ValueError, match="line 2: no video named 'nope'"):
        AnimationPairs(test_set, csv)


def _items(dataset: FramesDataset, epochs: int = 2) -> list[tuple]:
    items = []
    for epoch in range(epochs):
        dataset.set_epoch(epoch)
        for i in range(len(dataset)):
            item = dataset[i]
            items.append(
                (item["name"], item["frame_indices"].tolist(), item["source"], item["driving"])
            )
    return items


@pytest.mark.parametrize("kind", ["frames", "mp4"])
def test_frames_kept_decoded_are_the_frames_read_per_item(tmp_path, kind, monkeypatch):
    root = make_split_dataset(tmp_path, kind, count=12)
    kept = _items(FramesDataset(root, repeats=3))
    monkeypatch.setattr(datasets_module, "DECODED_FRAMES_BUDGET", 0)  # nothing is kept
    read = _items(FramesDataset(root, repeats=3))
    assert len(kept) == len(read) == 18
    for a, b in zip(kept, read, strict=True):
        assert a[:2] == b[:2] and torch.equal(a[2], b[2]) and torch.equal(a[3], b[3])


def test_a_bad_frame_fails_only_the_items_that_draw_it_when_frames_are_kept(tmp_path, monkeypatch):
    root = make_split_dataset(tmp_path, train=("a#1",), count=6)
    (root / "train" / "a#1" / "0000005.png").write_bytes(b"\x89PNG broken")
    outcomes = []
    for budget in (1 << 30, 0):
        monkeypatch.setattr(datasets_module, "DECODED_FRAMES_BUDGET", budget)
        dataset = FramesDataset(root, repeats=12)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            drawn = []
            for i in range(len(dataset)):
                try:
                    drawn.append(dataset[i]["frame_indices"].tolist())
                except VideoReadError:
                    drawn.append(None)
        outcomes.append(drawn)
    assert outcomes[0] == outcomes[1]
    assert None in outcomes[0] and any(pair is not None for pair in outcomes[0])
