"""The `synthetic_puppets` dataset: rendered on first use, cached, then read as a FOMM folder."""

from __future__ import annotations

import os
from pathlib import Path

from kptoolkit.data.datasets import FramesDataset
from kptoolkit.data.puppets.style import GENERATOR_VERSION
from kptoolkit.data.puppets.writer import generate_dataset, read_manifest
from kptoolkit.utils.locks import exclusive
from kptoolkit.utils.paths import cache_dir


def default_root(size: int, videos: int, frames: int, synth_seed: int) -> Path:
    """Cache folder of one synthetic dataset, named by everything that determines its bytes."""
    name = f"puppets-v{GENERATOR_VERSION}-{size}px-{videos}videos-{frames}frames-seed{synth_seed}"
    return cache_dir() / "datasets" / name


def _matches(manifest: dict | None, size: int, videos: int, frames: int, seed: int) -> bool:
    if manifest is None:
        return False
    total = sum(manifest["counts"].values())
    found = (manifest["version"], manifest["size"], total, manifest["frames"], manifest["seed"])
    return found == (GENERATOR_VERSION, size, videos, frames, seed)


def ensure_puppets(
    root: str | Path | None = None,
    size: int = 64,
    videos: int = 250,
    frames: int = 32,
    synth_seed: int = 0,
    workers: int = 2,
    progress: bool = True,
) -> Path:
    """The folder of the requested synthetic dataset, rendering it only if it is not cached."""
    root = Path(root) if root is not None else default_root(size, videos, frames, synth_seed)
    if puppets_cached(root, size, videos, frames, synth_seed):
        return root
    with exclusive(root.with_name(root.name + ".lock")):
        if not _matches(read_manifest(root), size, videos, frames, synth_seed):
            generate_dataset(
                root, videos, frames, size, synth_seed, workers=workers, progress=progress
            )
    return root


def puppets_cached(
    root: str | Path | None = None,
    size: int = 64,
    videos: int = 250,
    frames: int = 32,
    synth_seed: int = 0,
    **_: object,
) -> bool:
    """Whether the requested synthetic dataset is already rendered (in `root`, else the cache)."""
    root = Path(root) if root is not None else default_root(size, videos, frames, synth_seed)
    return _matches(read_manifest(root), size, videos, frames, synth_seed)


def synthetic_puppets(
    split: str = "train",
    root: str | Path | None = None,
    frame_size: int | None = None,
    size: int = 64,
    videos: int = 250,
    frames: int = 32,
    synth_seed: int = 0,
    id_sampling: bool = False,
    repeats: int = 1,
    max_frames: int | None = None,
    seed: int = 0,
    workers: int = min(2, os.cpu_count() or 1),
    groundtruth: bool = False,
) -> FramesDataset:
    """Built-in synthetic puppets (FOMM layout, ground-truth joints), generated once and cached."""
    folder = ensure_puppets(root, size, videos, frames, synth_seed, workers)
    return FramesDataset(
        folder,
        split,
        frame_size=frame_size or size,
        id_sampling=id_sampling,
        repeats=repeats,
        max_frames=max_frames,
        seed=seed,
        groundtruth=groundtruth,
    )
