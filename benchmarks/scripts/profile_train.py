"""Profile training steps of one quick-bench row with torch.profiler.

Prints the share of the steps' wall time spent in data loading, forward, losses, backward,
optimiser and the rest (logging, samples, checkpoints: everything outside those ranges), then
the ten operators with the most self CPU time.

    python benchmarks/scripts/profile_train.py --data DIR         # heatmap_sum + two_stage
    python benchmarks/scripts/profile_train.py --data DIR --generator fomm --masker ''

DIR is a synthetic dataset (e.g. the bench's, under the kptoolkit cache); without --data a small
one is rendered. The row uses the quick profile's config: CPU widths, batch 8, its learning rate
and bfloat16 autocast.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from kptoolkit.bench.profiles import PROFILES
from kptoolkit.config.schema import ExperimentConfig, apply_overrides
from kptoolkit.engine.trainer import Trainer
from kptoolkit.experiment.components import detector_params
from kptoolkit.keypoints.detector import KeypointDetector

RANGES = ("data", "forward", "losses", "backward", "optimiser", "discriminator")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--masker", default="heatmap_sum")
    parser.add_argument("--generator", default="two_stage")
    parser.add_argument("--data", default=None)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--set", nargs="*", default=[], dest="overrides")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="profile-train-"))
    data = Path(args.data) if args.data else work / "data"
    if not args.data:
        from kptoolkit.data.puppets.writer import generate_dataset

        generate_dataset(data, 24, 32, 64, workers=1, progress=False)
    profile_spec = PROFILES["quick"]
    config = ExperimentConfig()
    profile_spec.adjust(config)
    config = apply_overrides(
        config,
        [
            f"masker.name={args.masker}",
            f"generator.name={args.generator}",
            "data.dataset=fomm_frames",
            f"data.root={data}",
            "data.params={}",
            f"train.lr={profile_spec.learning_rates.get(args.generator, config.train.lr)}",
            f"train.steps={args.warmup + args.steps}",
            *args.overrides,
        ],
    )
    torch.manual_seed(0)
    kp = work / "kp.pth"
    torch.save({"kp_detector": KeypointDetector(**detector_params(config)).state_dict()}, kp)
    trainer = Trainer.from_config(config, work / "run", kp_checkpoint=str(kp), progress=False)
    trainer.total_steps = args.warmup
    trainer.train()
    trainer.total_steps = args.warmup + args.steps
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    events = prof.key_averages()
    by_name = {e.key: e for e in events}
    print(
        f"{args.masker or 'natural'} + {args.generator}: {args.steps} steps in {seconds:.1f} s "
        f"({seconds / args.steps * 1000:.0f} ms/step, profiler on), "
        f"{torch.get_num_threads()} threads"
    )
    print("| part | ms/step | share |")
    print("|:---|---:|---:|")
    covered = 0.0
    for name in RANGES:
        event = by_name.get(name)
        ms = 0.0 if event is None else event.cpu_time_total / 1000 / args.steps
        covered += ms
        print(f"| {name} | {ms:.1f} | {ms / (seconds * 1000 / args.steps):.1%} |")
    rest = seconds * 1000 / args.steps - covered
    print(
        f"| rest (logging, samples, checkpoints) | {rest:.1f} | "
        f"{rest / (seconds * 1000 / args.steps):.1%} |"
    )
    print()
    print(events.table(sort_by="self_cpu_time_total", row_limit=10, max_name_column_width=40))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
