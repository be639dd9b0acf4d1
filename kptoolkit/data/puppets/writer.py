"""Synthetic puppets: the dataset writer (folder layout, manifest, workers).

The built-in dataset: it needs no download, renders fast on CPU and comes with the 15 joint
positions of every frame, so pose metrics (AKD, MKR) can be evaluated without a pose model.
The puppets are modelled in `kptoolkit.data.puppets.model` and drawn by
`kptoolkit.data.puppets.render`; this module plans the split, renders the clips in worker
processes and writes them.

`generate_dataset` writes the FOMM layout::

    OUT/train/<identity>#<clip>/0000000.png ...
    OUT/test/<identity>#<clip>/0000000.png ...
    OUT/groundtruth/<split>/<identity>#<clip>.npz   (joints (T,15,2) float32, visible (T,15) bool)
    OUT/dataset.json                                (written last: marks a complete dataset)
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import attrs
import numpy as np
from PIL import Image
from tqdm import tqdm

from kptoolkit.data.puppets.model import JOINT_NAMES, SyntheticDataError, check_size
from kptoolkit.data.puppets.render import render_video
from kptoolkit.data.puppets.sampling import sample_identity
from kptoolkit.data.puppets.style import (
    DEFAULT_STYLE,
    GENERATOR_VERSION,
    motion_statistics,
    summarise_motion,
)
from kptoolkit.errors import KptoolkitError
from kptoolkit.utils.atomic import atomic_write_text
from kptoolkit.utils.processes import die_with_parent

GENERATOR = "kptoolkit.synthetic_puppets"
SPLITS = ("train", "test")
MANIFEST_NAME = "dataset.json"
# written first, so an interrupted generation can still be recognised and overwritten
MARKER_NAME = ".kptoolkit-synthetic-puppets"
GENERATED_ENTRIES = ("train", "test", "groundtruth", MANIFEST_NAME)


class OutputFolderError(KptoolkitError, FileExistsError):
    """The output folder holds something other than a synthetic puppet dataset."""


def video_name(identity: int, clip: int) -> str:
    """The name of a clip: `id0007#clip02`."""
    return f"id{identity:04d}#clip{clip:02d}"


@attrs.frozen
class _VideoJob:
    """One clip to render and write."""

    out: Path
    split: str
    identity: int
    clip: int
    seed: int
    frames: int
    size: int

    @property
    def name(self) -> str:
        return video_name(self.identity, self.clip)


def plan_split(
    videos: int, test_fraction: float, clips_per_identity: int
) -> dict[str, list[tuple[int, int]]]:
    """(identity, clip) pairs per split, splitting by identity.

    Identities get `clips_per_identity` clips (the last ones may get one fewer); the last
    identities go to test, as many as bring the test share closest to `test_fraction`, at least
    one when there are two videos or more and `test_fraction` > 0, never all of them.
    """
    identities = max(math.ceil(videos / clips_per_identity), 2 if test_fraction > 0 else 1)
    identities = min(identities, videos)
    base, extra = divmod(videos, identities)
    clips = [base + (1 if i < extra else 0) for i in range(identities)]
    test_ids = 0
    if identities >= 2 and test_fraction > 0:
        target = test_fraction * videos
        cumulative = np.cumsum(clips[::-1])[: identities - 1]
        test_ids = int(np.argmin(np.abs(cumulative - target))) + 1
    first_test = identities - test_ids
    plan: dict[str, list[tuple[int, int]]] = {"train": [], "test": []}
    for i, count in enumerate(clips):
        split = "test" if i >= first_test else "train"
        plan[split].extend((i, c) for c in range(count))
    return plan


def _write_png(frame: np.ndarray, path: Path) -> None:
    Image.fromarray(frame, mode="RGB").save(path, format="PNG", compress_level=1)


def _render_job(job: _VideoJob) -> tuple[_VideoJob, dict[str, float]]:
    """Render one clip and write its frames and ground truth; returns it with its motion
    statistics."""
    identity = sample_identity(np.random.default_rng([job.seed, 1, job.identity]), DEFAULT_STYLE)
    rng = np.random.default_rng([job.seed, 2, job.identity, job.clip])
    video, joints, visible = render_video(rng, job.frames, job.size, identity=identity)
    folder = job.out / job.split / job.name
    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(video):
        _write_png(frame, folder / f"{index:07d}.png")
    truth = job.out / "groundtruth" / job.split
    truth.mkdir(parents=True, exist_ok=True)
    np.savez(truth / f"{job.name}.npz", joints=joints, visible=visible)
    return job, motion_statistics(joints, visible)


def _is_synthetic_dataset(out: Path) -> bool:
    if (out / MARKER_NAME).is_file():
        return True
    try:
        manifest = json.loads((out / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("generator") == GENERATOR


def _prepare_output(out: Path) -> None:
    """Make `out` an empty dataset folder; only a previous synthetic dataset may be replaced."""
    if out.exists() and not out.is_dir():
        raise OutputFolderError(f"'{out}' exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not _is_synthetic_dataset(out):
            raise OutputFolderError(
                f"'{out}' is not empty and holds no synthetic puppet dataset; refusing to write "
                "into it (choose an empty or new folder)"
            )
        # the manifest goes first, so an interruption never leaves a complete-looking dataset
        for entry in (MANIFEST_NAME, *GENERATED_ENTRIES[:-1]):
            path = out / entry
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER_NAME).write_text(f"{GENERATOR} {GENERATOR_VERSION}\n")


def _check_positive_int(name: str, value: Any, minimum: int = 1) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise SyntheticDataError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_arguments(
    videos: int, frames: int, size: int, seed: int, test_fraction: float, clips: int, workers: int
) -> None:
    _check_positive_int("videos", videos)
    _check_positive_int("frames", frames, 2)
    check_size(size)
    _check_positive_int("seed", seed, 0)
    _check_positive_int("clips_per_identity", clips)
    _check_positive_int("workers", workers)
    if not 0 <= test_fraction < 1:
        raise SyntheticDataError(f"test_fraction must be in [0, 1), got {test_fraction!r}")


def _run_jobs(
    jobs: list[_VideoJob], workers: int, progress: bool
) -> dict[str, list[dict[str, float]]]:
    """Render every job; the motion statistics of each clip, per split, in job order."""
    # shown on a terminal only: a log or a captured stream gets no bar, the caller says more
    hidden = True if not progress else None
    bar = tqdm(total=len(jobs), desc="synthetic puppets", unit="video", disable=hidden)
    found: dict[_VideoJob, dict[str, float]] = {}
    with bar:
        if workers == 1:
            for job in jobs:
                found[job] = _render_job(job)[1]
                bar.update()
        else:
            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("fork" if "fork" in methods else None)
            with ProcessPoolExecutor(
                max_workers=workers,
                mp_context=context,
                initializer=die_with_parent,  # a killed render leaves no worker behind
                initargs=(os.getpid(),),
            ) as pool:
                for future in as_completed([pool.submit(_render_job, job) for job in jobs]):
                    job, statistics = future.result()
                    found[job] = statistics
                    bar.update()
    return {split: [found[j] for j in jobs if j.split == split] for split in SPLITS}


def generate_dataset(
    out: str | Path,
    videos: int,
    frames: int,
    size: int = 64,
    seed: int = 0,
    test_fraction: float = 0.2,
    clips_per_identity: int = 4,
    workers: int = 2,
    progress: bool = True,
) -> dict:
    """Render a synthetic puppet dataset into `out` (FOMM layout) and return its manifest.

    `videos` is the total over both splits; train and test share no identity. Every clip is
    seeded from (seed, identity, clip) alone, so the bytes do not depend on `workers`.
    `out` must be missing, empty or a previous synthetic dataset (which is replaced).
    """
    _check_arguments(videos, frames, size, seed, test_fraction, clips_per_identity, workers)
    out = Path(out)
    _prepare_output(out)
    plan = plan_split(videos, test_fraction, clips_per_identity)
    jobs = [
        _VideoJob(out, split, identity, clip, int(seed), frames, size)
        for split in SPLITS
        for identity, clip in plan[split]
    ]
    statistics = _run_jobs(jobs, min(workers, len(jobs)), progress)
    for split in SPLITS:  # a split without videos is still a folder
        (out / split).mkdir(exist_ok=True)
        (out / "groundtruth" / split).mkdir(parents=True, exist_ok=True)
    manifest = {
        "generator": GENERATOR,
        "version": GENERATOR_VERSION,
        "seed": int(seed),
        "size": size,
        "frames": frames,
        "test_fraction": test_fraction,
        "clips_per_identity": clips_per_identity,
        "counts": {split: len(plan[split]) for split in SPLITS},
        "joint_names": list(JOINT_NAMES),
        "identities": {split: sorted({f"id{i:04d}" for i, _ in plan[split]}) for split in SPLITS},
        "videos": {split: [video_name(i, c) for i, c in plan[split]] for split in SPLITS},
        "style": DEFAULT_STYLE.to_json(),
        # mean over each split's clips, in pixels: see kptoolkit.data.puppets.style
        "motion": {split: summarise_motion(statistics[split]) for split in SPLITS},
    }
    _write_manifest(out, manifest)
    return manifest


def _write_manifest(out: Path, manifest: dict) -> None:
    atomic_write_text(out / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")


_MANIFEST_KEYS = ("generator", "version", "seed", "size", "frames", "counts", "joint_names")


def read_manifest(root: str | Path) -> dict | None:
    """The manifest of a complete synthetic dataset at `root`, or None if missing or incomplete."""
    root = Path(root)
    try:
        manifest = json.loads((root / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("generator") != GENERATOR:
        return None
    if any(key not in manifest for key in _MANIFEST_KEYS):
        return None
    listed = manifest.get("videos")
    if not isinstance(listed, dict) or any(not isinstance(listed.get(s), list) for s in SPLITS):
        return None
    for split in SPLITS:
        for name in listed[split]:
            if not (root / split / name).is_dir():
                return None
            if not (root / "groundtruth" / split / f"{name}.npz").is_file():
                return None
    return manifest


def load_groundtruth(root: str | Path, split: str, video: str) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth of one video: joints (T, 15, 2) float32 in pixels and visible (T, 15) bool."""
    if split not in SPLITS:
        raise SyntheticDataError(f"split must be one of {SPLITS}, got {split!r}")
    path = Path(root) / "groundtruth" / split / f"{video}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"no ground truth for video '{video}' in split '{split}': {path}")
    with np.load(path) as data:
        return data["joints"].astype(np.float32), data["visible"].astype(bool)
