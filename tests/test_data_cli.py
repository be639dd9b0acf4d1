"""`kptoolkit data synth` then `data check`, and the cached `synthetic_puppets` dataset."""

from __future__ import annotations

import warnings

import pytest
from video_fixtures import make_video

from kptoolkit import create_dataset
from kptoolkit.cli.main import main
from kptoolkit.config.schema import ExperimentConfig
from kptoolkit.data.augment import augmentation_from_dict
from kptoolkit.data.datasets import SkippedVideoWarning


def test_synth_then_check_reports_every_video(tmp_path, capsys):
    out = tmp_path / "puppets"
    args = ["data", "synth", "--out", str(out), "--videos", "20", "--frames", "16"]
    assert main([*args, "--size", "64"]) == 0
    assert main(["data", "check", str(out)]) == 0
    report = capsys.readouterr().out
    assert "total: 20 videos (20 readable)" in report
    assert "64x64" in report and "status: usable" in report


def test_check_names_a_truncated_png_and_training_skips_it(tmp_path, capsys):
    out = tmp_path / "puppets"
    main(["data", "synth", "--out", str(out), "--videos", "8", "--frames", "6", "--workers", "1"])
    video = sorted((out / "train").iterdir())[1]
    bad = video / "0000004.png"
    bad.write_bytes(bad.read_bytes()[:50])
    capsys.readouterr()
    assert main(["data", "check", str(out)]) == 0  # still usable: one video is skipped
    assert main(["data", "check", str(out), "--strict"]) == 1
    report = capsys.readouterr().out
    assert str(bad) in report and "1 unreadable will be skipped" in report

    dataset = create_dataset("fomm_frames", root=str(out), split="train")
    bad_index = [v.name for v in dataset.videos].index(video.name)
    next_video = dataset.videos[bad_index + 1].name
    outcomes = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for epoch in range(20):
            dataset.set_epoch(epoch)
            item = dataset[bad_index]
            outcomes.append(item["name"])
            if item["name"] == video.name:  # pairs that avoid the bad frame are still fine
                assert 4 not in item["frame_indices"].tolist()
            else:
                assert item["name"] == next_video  # the next video stands in
    assert next_video in outcomes and dataset.skipped == outcomes.count(next_video)
    skip_warnings = [w for w in caught if w.category is SkippedVideoWarning]
    assert len(skip_warnings) == 1 and str(bad) in str(skip_warnings[0].message)


def test_check_names_a_truncated_mp4(tmp_path, capsys):
    for split, names in (("train", ["a#1", "b#1"]), ("test", ["c#1"])):
        (tmp_path / split).mkdir()
        for name in names:
            make_video(tmp_path / split / name, "mp4", count=10)
    bad = tmp_path / "train" / "b#1.mp4"
    bad.write_bytes(bad.read_bytes()[:300])
    assert main(["data", "check", str(tmp_path)]) == 0
    report = capsys.readouterr().out
    assert f"{bad}: " in report and "total: 3 videos (2 readable)" in report


def test_check_fails_on_unusable_dataset(tmp_path, capsys):
    (tmp_path / "train").mkdir()
    assert main(["data", "check", str(tmp_path)]) == 1
    assert "NOT usable" in capsys.readouterr().out


def test_synth_refuses_a_foreign_folder(tmp_path, capsys):
    (tmp_path / "thesis.tex").write_text("precious")
    assert main(["data", "synth", "--out", str(tmp_path), "--videos", "4", "--frames", "4"]) == 1
    assert "kptoolkit: error:" in capsys.readouterr().err
    assert (tmp_path / "thesis.tex").read_text() == "precious"


def test_synthetic_puppets_dataset_is_generated_once_and_cached(isolated_cache):
    params = {"videos": 6, "frames": 5, "size": 64, "workers": 1}
    train = create_dataset("synthetic_puppets", split="train", **params)
    manifests = list(isolated_cache.glob("datasets/*/dataset.json"))
    assert len(manifests) == 1
    stamp = manifests[0].stat().st_mtime_ns
    test = create_dataset("synthetic_puppets", split="test", **params)
    assert manifests[0].stat().st_mtime_ns == stamp  # reused, not rendered again
    assert {v.identity for v in train.videos}.isdisjoint({v.identity for v in test.videos})
    item = train[0]
    assert item["source"].shape == (3, 64, 64)
    assert create_dataset("synthetic_puppets", frame_size=32, **params)[0]["source"].shape == (
        3,
        32,
        32,
    )


def test_default_config_augmentation_is_valid():
    config = augmentation_from_dict(ExperimentConfig().data.augmentation)
    assert config.time_flip and config.horizontal_flip and config.jitter == pytest.approx(0.1)


def test_frames_of_different_sizes_in_one_video_are_flagged_and_still_train(tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "puppets"
    main(["data", "synth", "--out", str(out), "--videos", "8", "--frames", "6", "--workers", "1"])
    video = sorted((out / "train").iterdir())[0]
    frame = video / "0000003.png"
    Image.open(frame).resize((48, 40)).save(frame)  # one frame of another size
    capsys.readouterr()
    assert main(["data", "check", str(out)]) == 0
    report = capsys.readouterr().out
    assert "warning: 1 video(s) mix frame sizes within the video" in report and str(video) in report

    from kptoolkit.data.video_io import iter_frames, read_frames

    assert read_frames(video, [3, 0]).shape == (2, 64, 64, 3)  # the first frame's size
    assert {f.shape for f in iter_frames(video)} == {(64, 64, 3)}
    dataset = create_dataset("fomm_frames", root=str(out), split="train", frame_size=64)
    index = [v.name for v in dataset.videos].index(video.name)
    for epoch in range(6):  # pairs with and without the odd frame
        dataset.set_epoch(epoch)
        item = dataset[index]
        assert item["source"].shape == item["driving"].shape == (3, 64, 64)
