"""The bench's dataset: the base config pointed at `--dataset` (the synthetic puppets rendered
on first use), its test split read once, and frames of its first test video."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import torch

from kptoolkit.config.schema import DataConfig, ExperimentConfig
from kptoolkit.data.check import unreadable_videos
from kptoolkit.data.puppets.writer import read_manifest
from kptoolkit.errors import BenchError, ConfigError
from kptoolkit.experiment.build import build_dataset
from kptoolkit.registry.registries import DATASETS


@attrs.frozen
class BenchData:
    """The test split, where its real videos and the dataset are, and a synthetic dataset's
    manifest (None for other data)."""

    test: Any
    real_dir: Path
    root: Path
    manifest: dict[str, Any] | None
    unreadable: dict[str, str] = attrs.field(factory=dict)  # test video name -> reason


def choose_dataset(data: DataConfig, chosen: str | None) -> None:
    """Point the data config at `chosen`: a folder of FOMM frames or a registered dataset
    (None keeps the config's)."""
    if not chosen:
        return
    if Path(chosen).is_dir():
        if data.dataset != "fomm_frames":
            data.params = {}
        data.dataset, data.root = "fomm_frames", str(Path(chosen).resolve())
    elif chosen in DATASETS:
        if data.dataset != chosen:
            data.params, data.root = {}, None
        data.dataset = chosen
    else:
        raise ConfigError(
            f"--dataset {chosen!r} is neither a folder nor a registered dataset "
            f"({', '.join(DATASETS.names())})"
        )


def prepare_data(
    config: ExperimentConfig, chosen: str | None, progress: bool, say: Callable[[str], None]
) -> BenchData:
    """Point `config` at the dataset (rendering the synthetic one if needed) and read it."""
    data = config.data
    choose_dataset(data, chosen)
    if data.dataset == "synthetic_puppets":
        _prepare_puppets(data, progress, say)
    test = build_dataset(config, "test")
    train = build_dataset(config, "train")
    if not test.videos or not train.videos:
        raise BenchError(
            f"the dataset has {len(train.videos)} train and {len(test.videos)} test videos; "
            "the bench needs both"
        )
    unreadable = drop_unreadable(test, say)
    real_dir = Path(test.videos[0].path).parent
    root = Path(getattr(test, "root", real_dir))
    manifest = read_manifest(root)  # a synthetic dataset's (checks every file): once
    say(
        f"{data.dataset}: {len(train.videos)} train / {len(test.videos)} test videos at "
        f"{config.data.frame_size} px in {root}"
    )
    motion = (manifest or {}).get("motion", {}).get("test")
    if motion:
        say(
            f"test motion: joints {motion['joint']:.2f} px from frame 0 on average "
            f"(centroid {motion['centroid']:.2f} px, articulated {motion['articulated']:.2f} "
            f"px), figure {motion['height']:.1f} px tall"
        )
    return BenchData(test, real_dir, root, manifest, unreadable)


def drop_unreadable(test: Any, say: Callable[[str], None]) -> dict[str, str]:
    """Take the test videos that cannot be read whole out of `test` (as `reconstruct` skips
    them, so that no stage stops on one); returns their names and reasons."""
    if not all(hasattr(video, "path") for video in test.videos):
        return {}  # a dataset of another kind reads its own videos
    found = unreadable_videos(test.videos, getattr(test, "frame_width", None))
    if not found:
        return {}
    if len(found) == len(test.videos):
        raise BenchError(f"none of the {len(found)} test videos can be read: {found[0][1]}")
    dropped = {video.path for video, _ in found}
    test.videos = [video for video in test.videos if video.path not in dropped]
    for video, reason in found:
        say(f"skipping unreadable test video {video.name}: {reason}")
    return {video.name: reason for video, reason in found}


def _prepare_puppets(data: DataConfig, progress: bool, say: Callable[[str], None]) -> None:
    """Render the synthetic puppets once (cached) and point the data config at them."""
    from kptoolkit.data.puppets.cache import ensure_puppets, puppets_cached

    params = dict(data.params)
    params.setdefault("size", data.frame_size)
    known = ("size", "videos", "frames", "synth_seed", "workers")
    chosen = {k: params[k] for k in known if k in params}
    if puppets_cached(data.root, **chosen):
        say("synthetic puppets: cached")
    else:
        say("synthetic puppets: rendering them (once; cached after)")
    root = ensure_puppets(data.root, progress=progress, **chosen)
    data.params, data.root = params, str(root)


def first_frames(dataset: Any, count: int) -> tuple[torch.Tensor, Any]:
    """The first `count` frames of the first test video, and their ground-truth joints when
    the dataset has them (else None)."""
    video = dataset.videos[0]
    frames = []
    for frame in dataset.iter_video(video):
        frames.append(frame)
        if len(frames) == count:
            break
    joints = dataset.joints_of(video)[: len(frames)] if dataset.groundtruth else None
    return torch.stack(frames), joints


def synthetic_description(manifest: dict[str, Any] | None) -> dict[str, Any]:
    """Version and motion statistics of a synthetic dataset (nothing for other data)."""
    if manifest is None:
        return {}
    return {"version": manifest["version"], "motion": manifest.get("motion", {})}
