"""Finding the videos of a FOMM-layout dataset and splitting them into train and test."""

from __future__ import annotations

import math
import os
from pathlib import Path

import attrs
import numpy as np

from kptoolkit.data.video_io import VideoKind, video_kind
from kptoolkit.errors import KptoolkitError

SPLITS = ("train", "test")
FALLBACK_TEST_FRACTION = 0.2
FALLBACK_SEED = 0
# folders that sit beside train/ and test/ but hold no videos
RESERVED_FOLDERS = frozenset({"groundtruth", "evaluators", "__pycache__"})


class DatasetLayoutError(KptoolkitError):
    """The dataset folder has no usable videos, or no such split."""


@attrs.frozen
class VideoEntry:
    """One video of a dataset: where it is, how it is stored, its name and identity."""

    path: Path
    kind: VideoKind
    split: str

    @property
    def name(self) -> str:
        """The video's name: file or folder name without a video/image extension."""
        return self.path.stem if self.kind != "frames" else self.path.name

    @property
    def identity(self) -> str:
        """The part of the name before '#' (for Tai-Chi, the YouTube id)."""
        return self.name.split("#")[0]


def _videos_in(folder: Path, split: str) -> list[VideoEntry]:
    entries = []
    with os.scandir(folder) as items:
        for item in sorted(items, key=lambda e: e.name):
            if item.name.startswith(".") or item.name in RESERVED_FOLDERS:
                continue
            path = Path(item.path)
            kind = video_kind(path)
            if kind is not None:
                entries.append(VideoEntry(path, kind, split))
    return entries


def fallback_split(names: list[str]) -> tuple[list[int], list[int]]:
    """Indices (train, test) of an 80/20 shuffle split with seed 0 over sorted names.

    The same permutation rule as scikit-learn's `train_test_split(test_size=0.2,
    random_state=0)`, which FOMM uses; names are sorted first so the split does not depend on
    the order the file system lists them in.
    """
    count = len(names)
    n_test = math.ceil(FALLBACK_TEST_FRACTION * count) if count > 1 else 0
    permutation = np.random.RandomState(FALLBACK_SEED).permutation(count)
    return [int(i) for i in permutation[n_test:]], [int(i) for i in permutation[:n_test]]


def discover_videos(root: str | Path, split: str) -> list[VideoEntry]:
    """Videos of `split` ('train' or 'test'): from root/train, root/test, or the 80/20 fallback."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(f"dataset folder not found: {root}")
    if (root / "train").is_dir() or (root / "test").is_dir():
        folder = root / split
        if not folder.is_dir():
            raise DatasetLayoutError(f"{root} has no '{split}' folder")
        videos = _videos_in(folder, split)
    else:
        everything = _videos_in(root, "all")
        train, test = fallback_split([v.name for v in everything])
        chosen = train if split == "train" else test
        videos = [attrs.evolve(everything[i], split=split) for i in sorted(chosen)]
    if not videos:
        raise DatasetLayoutError(
            f"no videos for split '{split}' under {root}: expected frame folders, stacked images "
            "or .mp4/.gif/.mov files (in train/ and test/, or directly in the folder)"
        )
    return videos
