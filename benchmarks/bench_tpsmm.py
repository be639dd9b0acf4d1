"""TPSMM (the kptoolkit-tpsmm plugin) next to FOMM: inference ms/frame and peak memory.

Run: `python benchmarks/bench_tpsmm.py` (CPU, random weights). Each case builds the natural pair
through `kptoolkit.build` (tpsmm_keypoints + tpsmm, fomm_keypoints + fomm) at a preset's widths,
then times the inference path of `reconstruct` / `animate` (`compute_structure` of the driving
frames and `generate`, source structure computed once) after one warm-up call, at batch 1 and 8.
Peak memory is the RSS increase of one such call in a fresh process (`memory.py`).
"""

from __future__ import annotations

import argparse
import time

import torch
from memory import peak_mib_in_fresh_process

import kptoolkit
from kptoolkit.components import choose_components
from kptoolkit.config import ExperimentConfig
from kptoolkit.engine.prediction import compute_structure, generate, inference_models

CASES = [("cpu64", 64), ("paper", 256)]
GENERATORS = ["fomm", "tpsmm"]
BATCHES = [1, 8]


def build_case(generator: str, preset: str, size: int, batch: int):
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


def ms_per_frame(run, batch: int, repeats: int) -> float:
    run()  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        run()
    return (time.perf_counter() - started) / repeats / batch * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| generator | preset | px | batch | ms/frame | peak MiB |")
    print("|---|---|---:|---:|---:|---:|")
    for preset, size in CASES:
        for generator in GENERATORS:
            for batch in BATCHES:
                run = build_case(generator, preset, size, batch)
                ms = ms_per_frame(run, batch, args.repeats)
                del run
                peak = peak_mib_in_fresh_process(build_case, generator, preset, size, batch)
                print(f"| {generator} | {preset} | {size} | {batch} | {ms:.1f} | {peak:.0f} |")


if __name__ == "__main__":
    main()
