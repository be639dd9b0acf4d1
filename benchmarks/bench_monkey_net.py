"""Monkey-Net next to FOMM: inference ms/frame and peak memory on the CPU, through the harness.

Both run as `kptoolkit animate` / `reconstruct` run them (`inference_models`: eval mode,
channels_last, fp32): the source structure is computed once, then each batch of driving frames
goes through the masker (FOMM's keypoint detector, Monkey-Net's own) and the generator. Two
figures per case: the generator alone (driving structures given) and masker + generator.
Settings: 64 px at the cpu64 widths, 256 px at the paper widths; batches 1 and 8. Peak memory
is the resident-memory increase of one masker + generator call in a fresh process
(`memory.py`). Prints a Markdown table.

    OMP_NUM_THREADS=2 python benchmarks/bench_monkey_net.py [--settings cpu64,paper256]
        [--batches 1,8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from memory import peak_mib_in_fresh_process

METHODS = ("fomm", "monkey_net")
SETTINGS = {"cpu64": ("cpu64", 64), "paper256": ("paper", 256)}


def build(method: str, setting: str):
    import kptoolkit
    from kptoolkit.components import apply_with_presets, choose_components
    from kptoolkit.config import ExperimentConfig

    preset, size = SETTINGS[setting]
    config = choose_components(ExperimentConfig(preset=preset), None, method)
    config = apply_with_presets(config, [f"data.frame_size={size}"])
    torch.manual_seed(0)
    return kptoolkit.build(config), size


def case(method: str, setting: str, batch: int, generator_only: bool) -> Callable[[], object]:
    """One inference call: `batch` driving frames through (masker +) generator."""
    from kptoolkit.engine.prediction import compute_structure, generate, inference_models

    models, size = build(method, setting)
    g = torch.Generator().manual_seed(0)
    source = torch.rand(1, 3, size, size, generator=g)
    driving = torch.rand(batch, 3, size, size, generator=g)
    context = inference_models(models)
    context.__enter__()  # kept entered for the life of the case
    source_structure = compute_structure(models, source)
    driving_structure = compute_structure(models, driving) if generator_only else None

    def run():
        return generate(
            models, source, source_structure, driving, "animation", None, driving_structure
        )

    return run


def parameters(method: str, setting: str) -> tuple[float, float]:
    models, _ = build(method, setting)
    structure = models.detector if models.detector is not None else models.masker
    count = lambda m: sum(p.numel() for p in m.parameters()) / 1e6  # noqa: E731
    return count(structure), count(models.generator)


def median_ms(run: Callable[[], object], rounds: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default="cpu64,paper256")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-memory", action="store_true")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(
        "| method | setting | batch | params (structure + generator) | generator ms/frame "
        "| masker + generator ms/frame | peak MiB |"
    )
    print("|---|---|---|---|---|---|---|")
    for setting in args.settings.split(","):
        for method in METHODS:
            structure, generator = parameters(method, setting)
            for batch in (int(b) for b in args.batches.split(",")):
                gen = median_ms(case(method, setting, batch, True), args.rounds) / batch
                full = median_ms(case(method, setting, batch, False), args.rounds) / batch
                peak = (
                    float("nan")
                    if args.no_memory
                    else peak_mib_in_fresh_process(case, method, setting, batch, False)
                )
                print(
                    f"| {method} | {setting} | {batch} | {structure:.2f}M + {generator:.2f}M "
                    f"| {gen:.1f} | {full:.1f} | {peak:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
