"""Training step time per precision and layout: fp32 vs bf16 autocast, contiguous vs channels_last.

Each pair trains with the `Trainer` (data loading, augmentation, losses, optimisers: a real
step) on synthetic puppets, at 64 px CPU widths (batch 8) or 256 px paper widths
(configs/taichi-256.yaml with L1 pyramid losses, batch 2). A detector with random weights
serves the keypoint maskers.
Prints seconds per step, the ratio to fp32 contiguous and the mean total loss over the measured
steps (the same batches in every mode, so the losses differ only by precision).

    python benchmarks/scripts/bench_train_precision.py            # 64 px, ~5 min
    python benchmarks/scripts/bench_train_precision.py --setting paper256 --steps 3 --warmup 1
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import torch

from kptoolkit.config.schema import ExperimentConfig, ModelConfig, load_config
from kptoolkit.engine.trainer import Trainer
from kptoolkit.experiment.components import (
    apply_with_presets,
    choose_components,
    component_losses,
    detector_params,
)
from kptoolkit.keypoints.detector import KeypointDetector
from kptoolkit.registry.presets import CPU64

ROOT = Path(__file__).resolve().parents[2]  # the repository
PAIRS = {
    "heatmap_sum+two_stage": ("heatmap_sum", "two_stage"),
    "fomm": ("", "fomm"),
    "x2face": ("", "x2face"),
}
MODES = {
    "fp32": ("train.precision=fp32", "train.channels_last=false"),
    "fp32 channels_last": ("train.precision=fp32", "train.channels_last=true"),
    "bf16": ("train.precision=bf16", "train.channels_last=false"),
    "bf16 channels_last": ("train.precision=bf16", "train.channels_last=true"),
    "auto": ("train.precision=auto", "train.channels_last=auto"),
}


def base_config(setting: str, masker: str, generator: str) -> tuple[ExperimentConfig, list[str]]:
    """The setting's config for the pair, and its batch override."""
    if setting == "paper256":
        config = choose_components(
            load_config(ROOT / "configs" / "taichi-256.yaml"), masker, generator
        )
        # the perceptual loss needs VGG weights, which are never downloaded: the CPU profile's
        # L1 pyramids stand in (the networks are the paper's)
        config.losses = ExperimentConfig().losses
        cpu = ExperimentConfig(preset=CPU64)
        for kind, section in (("maskers", config.masker), ("generators", config.generator)):
            plain = ModelConfig(section.name)  # the cpu64 preset's loss terms, paper widths
            section.losses = component_losses(cpu, kind, plain, section.name)
            section.preset = "paper"
        return config, ["train.batch_size=2", "data.frame_size=256"]
    return choose_components(ExperimentConfig(), masker, generator), ["train.batch_size=8"]


def timing_config(
    setting: str,
    masker: str,
    generator: str,
    data: Path,
    steps: int,
    mode: tuple[str, ...],
    log_every: int = 1,
) -> ExperimentConfig:
    """The pair's config at `setting` on the rendered puppets in `data`, for `steps` steps
    with `mode`'s overrides: no workers, checkpoints or samples in the way."""
    config, extra = base_config(setting, masker, generator)
    return apply_with_presets(
        config,
        [
            "data.dataset=fomm_frames",
            f"data.root={data}",
            "data.params={}",
            "data.num_workers=0",
            f"train.steps={steps}",
            "train.checkpoint_every=100000000",
            "train.sample_every=100000000",
            f"train.log_every={log_every}",
            *extra,
            *mode,
        ],
    )


def time_steps(config: ExperimentConfig, out: Path, kp: Path, warmup: int, steps: int):
    """(seconds per measured step, mean total loss of the measured steps)."""
    trainer = Trainer.from_config(config, out, kp_checkpoint=str(kp), progress=False)
    trainer.total_steps = warmup
    trainer.train()
    trainer.total_steps = warmup + steps
    started = time.perf_counter()
    trainer.train()
    seconds = (time.perf_counter() - started) / steps
    with (out / "losses.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if int(r["step"]) > warmup]
    loss = sum(float(r["total"]) for r in rows) / max(len(rows), 1)
    return seconds, loss


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=("cpu64", "paper256"), default="cpu64")
    parser.add_argument("--pairs", default=",".join(PAIRS))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--data", default=None, help="a synthetic dataset (default: rendered)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-train-precision-"))
    size = 256 if args.setting == "paper256" else 64
    data = Path(args.data) if args.data else work / "data"
    if not args.data:
        from kptoolkit.data.puppets.writer import generate_dataset

        generate_dataset(data, 16, 16, size, workers=1, progress=False)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.setting}")
    print("| pair | mode | s/step | ratio to fp32 | mean total loss |")
    print("|:---|:---|---:|---:|---:|")
    for pair in args.pairs.split(","):
        masker, generator = PAIRS[pair]
        baseline = None
        for mode in args.modes.split(","):
            config = timing_config(
                args.setting, masker, generator, data, args.warmup + args.steps, MODES[mode]
            )
            kp = work / f"kp-{args.setting}.pth"
            if not kp.exists():
                torch.manual_seed(0)
                detector = KeypointDetector(**detector_params(config))
                torch.save({"kp_detector": detector.state_dict()}, kp)
            out = work / f"{pair}-{mode.replace(' ', '-')}"
            seconds, loss = time_steps(config, out, kp, args.warmup, args.steps)
            baseline = baseline or seconds
            print(
                f"| {pair} | {mode} | {seconds:.3f} | {seconds / baseline:.2f}x | {loss:.5f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
