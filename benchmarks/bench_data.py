"""Data pipeline speed: synthetic generation, training-loader throughput, augmentation."""

from __future__ import annotations

import time

import pytest
import torch
from torch.utils.data import DataLoader

from kptoolkit.data.augment import AugmentationConfig, PairAugmentation
from kptoolkit.data.datasets import FramesDataset
from kptoolkit.data.synthetic import generate_dataset

LOADER_TARGETS = {64: 500, 256: 100}  # pairs per second


def report(benchmark, line: str, **figures: float) -> None:
    """Print a summary line and keep the figures in the benchmark's extra_info."""
    benchmark.extra_info.update(figures)
    print(f"\n{line}")


def test_synthetic_generation(benchmark, tmp_path):
    out = tmp_path / "puppets"

    def generate():
        generate_dataset(out, videos=250, frames=32, size=64, seed=0, workers=2, progress=False)

    benchmark.pedantic(generate, rounds=1, iterations=1)
    seconds = benchmark.stats.stats.mean
    counts = {s: len(list((out / s).iterdir())) for s in ("train", "test")}
    assert counts == {"train": 200, "test": 50}
    report(
        benchmark,
        f"synthetic generation: 250 videos x 32 frames at 64px in {seconds:.1f} s (target < 60 s)",
        seconds=seconds,
    )


@pytest.mark.parametrize("size", [64, 256])
def test_loader_throughput(benchmark, tmp_path, size):
    root = tmp_path / f"puppets{size}"
    generate_dataset(root, videos=60, frames=32, size=size, seed=0, workers=2, progress=False)
    batch_size = 32
    batches = 40 if size == 64 else 12
    videos = len(list((root / "train").iterdir()))
    dataset = FramesDataset(root, "train", repeats=-(-(batches + 1) * batch_size // videos))

    def consume() -> float:
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=2)
        iterator = iter(loader)
        next(iterator)  # worker start-up is not throughput
        start = time.perf_counter()
        for _ in range(batches):
            next(iterator)
        return batches * batch_size / (time.perf_counter() - start)

    rates = []
    benchmark.pedantic(lambda: rates.append(consume()), rounds=3, iterations=1)
    best = max(rates)
    target = LOADER_TARGETS[size]
    report(
        benchmark,
        f"loader at {size}px, 2 workers, batch {batch_size}: {best:.0f} pairs/s "
        f"(median of rounds {sorted(rates)[1]:.0f}; target >= {target})",
        pairs_per_second=best,
        target=target,
    )


@pytest.mark.parametrize("size", [64, 256])
def test_augmentation(benchmark, size):
    augment = PairAugmentation(AugmentationConfig(rotation=10, scale_min=0.9, scale_max=1.1))
    source, driving = torch.rand(2, 8, 3, size, size).unbind(0)
    generator = torch.Generator().manual_seed(0)
    benchmark(augment, source, driving, generator)
    ms = benchmark.stats.stats.median * 1000
    report(benchmark, f"augmentation, 8 pairs at {size}px: {ms:.1f} ms", ms_per_batch=ms)
