"""Data pipeline speed: synthetic generation, training-loader throughput, augmentation."""

from __future__ import annotations

import shutil

import pytest
import torch
from torch.utils.data import DataLoader

from kptoolkit.data.augment import AugmentationConfig, PairAugmentation
from kptoolkit.data.datasets import FramesDataset
from kptoolkit.data.puppets.writer import generate_dataset

LOADER_TARGETS = {64: 500, 256: 100}  # pairs per second
LOADER_BATCH = 32


def report(benchmark, line: str, **figures: float) -> None:
    """Print a summary line and keep the figures in the benchmark's extra_info."""
    benchmark.extra_info.update(figures)
    print(f"\n{line}")


def test_synthetic_generation(benchmark, tmp_path, smoke):
    """250 puppet videos (200 train, 50 test) x 32 frames at 64 px, 2 workers; 20 in smoke."""
    videos = 20 if smoke else 250
    out = tmp_path / "puppets"

    def empty_folder():
        shutil.rmtree(out, ignore_errors=True)

    # one round: the case takes about a minute, a second one would tell little more
    benchmark.pedantic(
        generate_dataset,
        args=(out,),
        kwargs={"videos": videos, "frames": 32, "size": 64, "workers": 2, "progress": False},
        setup=empty_folder,
        rounds=1,
        iterations=1,
    )
    counts = {s: len(list((out / s).iterdir())) for s in ("train", "test")}
    assert counts == {"train": videos * 4 // 5, "test": videos // 5}
    if benchmark.enabled:
        seconds = benchmark.stats.stats.mean
        report(
            benchmark,
            f"synthetic generation: {videos} videos x 32 frames at 64px in {seconds:.1f} s "
            "(target < 60 s)",
            seconds=seconds,
        )


@pytest.mark.parametrize("size", [64, 256])
def test_loader_throughput(benchmark, tmp_path, smoke, size):
    """Training pairs per second from PNG folders, 2 loader workers, batch 32: each round is
    the next batch of one running loader (its workers' start-up is left out)."""
    root = tmp_path / f"puppets{size}"
    videos, frames = (10, 8) if smoke else (60, 32)
    generate_dataset(root, videos, frames, size, workers=2, progress=False)
    batches = 40 if size == 64 else 12
    train = len(list((root / "train").iterdir()))
    # enough pairs for the start-up batch, the warm-up rounds and the timed ones
    dataset = FramesDataset(root, "train", repeats=-(-(batches + 3) * LOADER_BATCH // train))
    loader = DataLoader(dataset, batch_size=LOADER_BATCH, shuffle=True, num_workers=2)
    iterator = iter(loader)
    next(iterator)  # worker start-up is not throughput
    benchmark.pedantic(next, args=(iterator,), rounds=batches, iterations=1, warmup_rounds=2)
    del iterator
    if benchmark.enabled:
        rate = LOADER_BATCH / benchmark.stats.stats.mean
        target = LOADER_TARGETS[size]
        report(
            benchmark,
            f"loader at {size}px, 2 workers, batch {LOADER_BATCH}: {rate:.0f} pairs/s "
            f"over {batches} batches (target >= {target})",
            pairs_per_second=rate,
            target=target,
        )


@pytest.mark.parametrize("size", [64, 256])
def test_augmentation(benchmark, size):
    augment = PairAugmentation(AugmentationConfig(rotation=10, scale_min=0.9, scale_max=1.1))
    source, driving = torch.rand(2, 8, 3, size, size).unbind(0)
    generator = torch.Generator().manual_seed(0)
    benchmark(augment, source, driving, generator)
    if benchmark.enabled:
        ms = benchmark.stats.stats.median * 1000
        report(benchmark, f"augmentation, 8 pairs at {size}px: {ms:.1f} ms", ms_per_batch=ms)
