"""A test video that cannot be read (corrupt mid-stream, or truncated) is skipped by every stage
of the bench, as `reconstruct` skips it, and the results say which."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from kptoolkit.cli.main import main
from kptoolkit.data.video_io import VideoReadError, iter_frames, write_mp4

FRAMES, SIZE = 6, 64


def _clip(seed: int) -> list[np.ndarray]:
    """A square moving over a coloured background."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 255, 3, dtype=np.uint8)
    frames = []
    for t in range(FRAMES):
        frame = np.empty((SIZE, SIZE, 3), np.uint8)
        frame[:] = background
        top, left = 10 + 3 * t, 8 + 4 * t
        frame[top : top + 20, left : left + 20] = 255 - background
        frames.append(frame)
    return frames


def _garble_middle(path: Path) -> None:
    """Overwrite bytes inside the stream, the container's index intact: the file opens, and
    decoding it fails ('cannot decode', not 'cannot open')."""
    data = bytearray(path.read_bytes())
    rng = random.Random(0)
    for i in range(int(len(data) * 0.3), int(len(data) * 0.5)):
        data[i] = rng.randrange(256)
    path.write_bytes(bytes(data))
    with pytest.raises(VideoReadError, match="cannot decode"):
        for _ in iter_frames(path):
            pass


@pytest.fixture
def dataset(tmp_path) -> Path:
    root = tmp_path / "videos"
    for split, count in (("train", 3), ("test", 4)):
        (root / split).mkdir(parents=True)
        for index in range(count):
            write_mp4(_clip(index + 10 * (split == "test")), root / split / f"v{index}.mp4")
    _garble_middle(root / "test" / "v1.mp4")
    truncated = root / "test" / "v2.mp4"
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    return root


@pytest.mark.slow
def test_the_bench_skips_unreadable_test_videos_and_says_so(dataset, tmp_path, capfd):
    out = tmp_path / "bench"
    args = ["bench", "--profile", "micro", "--dataset", str(dataset), "--baselines", "x2face"]
    assert main([*args, "--out", str(out), "--no-progress"]) == 0, capfd.readouterr().err
    log = capfd.readouterr().out
    assert "skipping unreadable test video v1" in log and "skipping unreadable test video v2" in log
    payload = json.loads((out / "results.json").read_text())
    assert payload["dataset"]["unreadable_test_videos"] == ["v1", "v2"]
    assert (
        "2 test videos could not be read and are left out of every row: v1, v2"
        in (out / "results.md").read_text()
    )
    # every row scored the readable videos, the no-motion reference included
    states = list(out.rglob("bench-state.json"))
    scored = [
        (state, scores)
        for state in states
        for name, record in json.loads(state.read_text()).items()
        if name.startswith("scores")
        for scores in record["per_video"].values()
    ]
    assert len(scored) >= 3 * len(states)
    for state, scores in scored:
        assert sorted(scores["names"]) == ["v0", "v3"], state
    # a rerun reuses everything and says the same
    assert main([*args, "--out", str(out), "--no-progress"]) == 0
    assert "skipping unreadable test video v1" in capfd.readouterr().out
