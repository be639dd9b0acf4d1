"""The baselines side by side (FOMM, X2Face, Monkey-Net, TPSMM when its plugin is installed):
inference ms/frame and peak memory of each generator with its natural masker.

Run: `python benchmarks/scripts/bench_baselines.py [--generators fomm,x2face,monkey_net,tpsmm]
[--repeats 3]` (CPU, random weights). Each case builds the natural pair through
`kptoolkit.build` at a preset's widths (cpu64 at 64 px, paper at 256 px), then times the
inference path of `reconstruct` / `animate` (the source's structure once, then the driving
frames' structures and the generator) after one warm-up call, at batch 1 and 8. Peak memory is
the RSS increase of one such call in a fresh process (`benchmarks/memory.py`).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: memory.py

from memory import peak_mib_in_fresh_process

import kptoolkit
from kptoolkit.config.schema import ExperimentConfig
from kptoolkit.engine.prediction import (
    compute_structure,
    generate,
    inference_models,
)
from kptoolkit.experiment.components import choose_components

CASES = [("cpu64", 64), ("paper", 256)]
DEFAULT_GENERATORS = ["fomm", "x2face", "monkey_net", "tpsmm"]
BATCHES = [1, 8]


def build_case(generator: str, preset: str, size: int, batch: int) -> Callable[[], None]:
    """A callable running one inference step of `batch` driving frames."""
    torch.manual_seed(0)
    config = choose_components(ExperimentConfig(name="bench", preset=preset), None, generator)
    config.data.frame_size = size
    models = kptoolkit.build(config)
    source = torch.rand(1, 3, size, size)
    driving = torch.rand(batch, 3, size, size)

    def run() -> None:
        with inference_models(models), torch.inference_mode():
            structure = compute_structure(models, source)
            generate(models, source, structure, driving, task="reconstruction")

    return run


def parameters(generator: str, preset: str, size: int) -> float:
    """Millions of parameters of the pair (masker and generator)."""
    config = choose_components(ExperimentConfig(name="bench", preset=preset), None, generator)
    config.data.frame_size = size
    models = kptoolkit.build(config)
    count = sum(p.numel() for m in models.modules().values() for p in m.parameters())
    return count / 1e6


def ms_per_frame(run: Callable[[], None], batch: int, repeats: int) -> float:
    """Mean wall time per driving frame over `repeats` calls, after one warm-up call."""
    run()
    started = time.perf_counter()
    for _ in range(repeats):
        run()
    return (time.perf_counter() - started) / repeats / batch * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generators", default=",".join(DEFAULT_GENERATORS))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    names = [name for name in args.generators.split(",") if name]
    missing = [name for name in names if name not in kptoolkit.GENERATORS]
    if missing:
        raise SystemExit(f"not installed: {', '.join(missing)} (tpsmm: plugins/kptoolkit-tpsmm)")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32")
    print("| generator | preset | px | params (M) | batch | ms/frame | peak MiB |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for preset, size in CASES:
        for generator in names:
            millions = parameters(generator, preset, size)
            for batch in BATCHES:
                run = build_case(generator, preset, size, batch)
                ms = ms_per_frame(run, batch, args.repeats)
                del run
                peak = peak_mib_in_fresh_process(build_case, generator, preset, size, batch)
                print(
                    f"| {generator} | {preset} | {size} | {millions:.2f} | {batch} | {ms:.1f} "
                    f"| {peak:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
