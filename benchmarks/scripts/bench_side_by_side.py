"""Training runs one after another with every thread, or side by side with a share each.

The question behind `kptoolkit bench --jobs`: on this machine, do two 64 px CPU-width runs
trained at the same time (each with half the threads) finish sooner than the same two runs
trained one after the other with every thread? Each mode runs
`benchmarks/scripts/bench_train_precision.py` (a real Trainer step: data, bf16 channels_last
forward, losses, backward, optimiser) in subprocesses, so that each has its own thread pool:

- alone, all threads: each pair by itself with every thread (the sequential bench);
- alone, share: each pair by itself with its share of the threads (its speed with no neighbour);
- side by side: every pair at once, each with its share.

Prints seconds per step per pair and mode, and the wall time of `--steps` steps of every pair:
the sum of the sequential times against the longest side-by-side time.

    python benchmarks/scripts/bench_side_by_side.py                # ~3 min on 2 cores
    python benchmarks/scripts/bench_side_by_side.py --pairs fomm,x2face --steps 60
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
STEP_TIME = re.compile(r"^\| (\S+) \| bf16 channels_last \| ([0-9.]+) \|", re.MULTILINE)


def launch(pair: str, threads: int, steps: int, warmup: int) -> subprocess.Popen[str]:
    """bench_train_precision.py for one pair, bf16 channels_last, with `threads` threads."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    command = [
        sys.executable,
        str(HERE / "bench_train_precision.py"),
        "--pairs",
        pair,
        "--modes",
        "bf16 channels_last",
        "--steps",
        str(steps),
        "--warmup",
        str(warmup),
    ]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)


def seconds_per_step(process: subprocess.Popen[str]) -> float:
    """The s/step a finished bench_train_precision.py printed."""
    output, _ = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"bench_train_precision.py failed ({process.returncode}):\n{output}")
    found = STEP_TIME.search(output)
    if found is None:
        raise SystemExit(f"no step time in:\n{output}")
    return float(found.group(2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default="fomm,heatmap_sum+two_stage")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args(argv)
    pairs = args.pairs.split(",")
    share = max(1, args.threads // len(pairs))
    times: dict[str, dict[str, float]] = {pair: {} for pair in pairs}
    for pair in pairs:
        times[pair]["alone, all threads"] = seconds_per_step(
            launch(pair, args.threads, args.steps, args.warmup)
        )
        times[pair]["alone, share"] = seconds_per_step(launch(pair, share, args.steps, args.warmup))
    together = {pair: launch(pair, share, args.steps, args.warmup) for pair in pairs}
    for pair, process in together.items():
        times[pair]["side by side"] = seconds_per_step(process)
    modes = ["alone, all threads", "alone, share", "side by side"]
    print(f"torch {torch.__version__}; {args.threads} threads, {share} each side by side")
    print("| pair | " + " | ".join(f"{m} (s/step)" for m in modes) + " |")
    print("|:---|" + "---:|" * len(modes))
    for pair in pairs:
        print(f"| {pair} | " + " | ".join(f"{times[pair][m]:.3f}" for m in modes) + " |")
    sequential = sum(times[p]["alone, all threads"] for p in pairs) * args.steps
    side_by_side = max(times[p]["side by side"] for p in pairs) * args.steps
    print(
        f"{args.steps} steps of each: one after another {sequential:.1f} s, side by side "
        f"{side_by_side:.1f} s ({side_by_side / sequential:.2f}x)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
