"""When and how the perturbed_mask row's mask collapses: its statistics per checkpoint.

Trains the bench's perturbed_mask + two_stage row (the quick recipe: its widths, learning rate,
precision and losses) on a dataset for a few hundred steps with a checkpoint every few steps,
then reads every checkpoint and prints what its mask network makes of held-out frames: the mean
mask value, the share of saturated pixels (below 0.02 or above 0.98), the spatial spread within
a frame, how much the mask changes from frame to frame of a video (what a pose signal needs),
and the last layer's bias and summed weights (the drift the collapse would show). Run on a
validation dataset carved from the puppets' training split (never the test split):

    kptoolkit data carve <puppets dataset> --out data/puppets-val
    python benchmarks/scripts/perturbed_mask_collapse.py data/puppets-val --steps 200 --every 10
    python benchmarks/scripts/perturbed_mask_collapse.py data/puppets-val --seed 1 --out pm-seed1

`--batchnorm-scales uniform` starts every batch-norm scale of the row's trained networks at a
uniform draw in [0, 1], as PyTorch before 1.2 did (the published perturbed-mask code's
version), instead of at 1.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

from kptoolkit.bench.plan import BenchOptions, Entry
from kptoolkit.bench.runner import Bench
from kptoolkit.engine.checkpoints import list_checkpoints, load_run
from kptoolkit.engine.trainer import Trainer
from kptoolkit.engine.weight_average import weight_average
from kptoolkit.experiment.build import build_dataset

SATURATED = 0.02  # a mask value this close to 0 or 1 has almost no sigmoid gradient


def mask_statistics(masks: torch.Tensor) -> dict[str, float]:
    """Statistics of masks (frames, 1, h, w) of one video's frames in order."""
    values = masks.float()
    return {
        "mean": float(values.mean()),
        "saturated": float(((values < SATURATED) | (values > 1 - SATURATED)).float().mean()),
        "spatial_std": float(values.flatten(1).std(dim=1).mean()),
        "temporal_std": float(values.std(dim=0).mean()),
    }


def checkpoint_report(path: Path, videos: list[torch.Tensor]) -> dict[str, float]:
    """The mean of `mask_statistics` over `videos` (each (frames, 3, H, W)) for a checkpoint's
    mask network, with its last layer's bias and summed weights."""
    _, models = load_run(path)
    masker = models.masker.eval()
    rows = []
    with torch.no_grad():
        for frames in videos:
            rows.append(mask_statistics(masker(frames).mask))
    report = {key: sum(row[key] for row in rows) / len(rows) for key in rows[0]}
    report["ref_bias"] = float(masker.ref.bias.detach().sum())
    report["ref_weight_sum"] = float(masker.ref.weight.detach().sum())
    return report


def draw_batchnorm_scales(networks: dict[str, nn.Module], seed: int) -> int:
    """Redraw every batch-norm scale of `networks` uniformly in [0, 1] from a generator of its
    own (the run's other random draws stay as they were); returns how many layers changed."""
    generator = torch.Generator().manual_seed(seed)
    layers = [
        m
        for network in networks.values()
        for m in network.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None
    ]
    with torch.no_grad():
        for layer in layers:
            draw = torch.rand(layer.weight.shape, generator=generator)
            layer.weight.copy_(draw.to(layer.weight.device, layer.weight.dtype))
    return len(layers)


def held_out_videos(config, count: int) -> list[torch.Tensor]:
    """The first `count` test videos of the dataset, as frame tensors."""
    dataset = build_dataset(config, "test")
    return [torch.stack(list(dataset.iter_video(video))) for video in dataset.videos[:count]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path, help="a carved validation dataset")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--every", type=int, default=10, help="a checkpoint every N steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--videos", type=int, default=8, help="held-out videos to read")
    parser.add_argument("--set", nargs="*", default=[], dest="overrides", help="key=value")
    parser.add_argument("--out", type=Path, default=Path("perturbed-mask-collapse"))
    parser.add_argument("--batchnorm-scales", choices=["ones", "uniform"], default="ones")
    args = parser.parse_args()

    options = BenchOptions(
        ["perturbed_mask"], ["two_stage"], [], dataset=str(args.dataset), overrides=args.overrides
    )
    bench = Bench(options)
    bench.prepare_data()
    plan = bench.entry_plan(Entry("perturbed_mask", "two_stage", "variant"), None, args.seed)
    config = plan.config
    config.train.steps = args.steps
    config.train.checkpoint_every = args.every
    config.train.keep_last = args.steps // args.every + 1
    config.train.sample_every = args.steps
    resume = (args.out / "checkpoints").is_dir()
    trainer = Trainer(plan, args.out, resume=resume)
    if args.batchnorm_scales == "uniform" and not resume:
        networks = {r: m for r, m in trainer.groups.items() if r != "discriminator"}
        print(f"batch-norm scales drawn in [0, 1]: {draw_batchnorm_scales(networks, args.seed)}")
        trainer.average = weight_average(trainer.groups, config.train.ema_decay)
    trainer.train()

    videos = held_out_videos(config, args.videos)
    columns = ["mean", "saturated", "spatial_std", "temporal_std", "ref_bias", "ref_weight_sum"]
    print("| step | " + " | ".join(columns) + " |")
    print("|---:|" + "---:|" * len(columns))
    for step, path in list_checkpoints(args.out / "checkpoints"):
        report = checkpoint_report(path, videos)
        print(f"| {step} | " + " | ".join(f"{report[c]:.4f}" for c in columns) + " |")


if __name__ == "__main__":
    main()
