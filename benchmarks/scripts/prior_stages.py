"""How the detector prior's second stage was chosen: keypoint spread and probe R^2 per epoch.

Run on a validation dataset carved from the puppets' training split (never the test split):
trains (or reuses, from the cache) the prior's first stage exactly as the quick bench does,
then the second stage (the FOMM row's config from the first stage's detector) with the given
repeats, learning-rate drops and equivariance scale, keeping a checkpoint per epoch, and prints
each checkpoint's diagnostics (`kptoolkit.bench.stages.detector_prior.prior_diagnostics`: spread of
the keypoints around their centroid, linear-probe R^2 to the ground-truth joints, fitted on the
dataset's train split and scored on its test split).

    kptoolkit data carve ~/.cache/kptoolkit/datasets/puppets-v2-64px-250videos-32frames-seed0 \\
        --out data/puppets-val
    python benchmarks/scripts/prior_stages.py data/puppets-val --repeats 24 --milestones '' # 12 min
    python benchmarks/scripts/prior_stages.py data/puppets-val --repeats 18 --milestones 6,9
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import attrs
import torch

from kptoolkit.bench.plan import BenchOptions, Entry
from kptoolkit.bench.runner import Bench
from kptoolkit.bench.stages.detector_prior import (
    PRIOR_RECIPE,
    PriorRecipe,
    ensure_prior,
    prior_diagnostics,
    prior_stages,
    refine_config,
    scale_equivariance,
)
from kptoolkit.config.overrides import apply_overrides
from kptoolkit.engine.checkpoints import list_checkpoints
from kptoolkit.engine.distributed import DistContext
from kptoolkit.engine.trainer import Trainer
from kptoolkit.experiment.build import build_dataset
from kptoolkit.experiment.resolve import record_detector_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path, help="a carved validation dataset")
    parser.add_argument("--repeats", type=int, default=24, help="second-stage repeats per epoch")
    parser.add_argument(
        "--milestones", default="", help="second-stage learning-rate drops (epochs, comma list)"
    )
    parser.add_argument(
        "--equivariance-scale", type=float, default=1.0, help="times the row's equivariance"
    )
    parser.add_argument("--out", type=Path, default=Path("prior-stages"), help="run folder")
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="overrides of both stages' configs, e.g. generator.params.blend_warped_source=true",
    )
    parser.add_argument(
        "--set-second",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="overrides of the second stage's config alone, e.g. train.lr=5e-4",
    )
    parser.add_argument(
        "--stage-one-precision",
        default=PRIOR_RECIPE.precision,
        help="the first stage's training precision (default: the rows', as the bench trains it)",
    )
    args = parser.parse_args()

    bench = Bench(BenchOptions(["heatmap_sum"], ["two_stage"], [], dataset=str(args.dataset)))
    bench.prepare_data()
    # the FOMM config the bench's prior starts from (without the profile's generator parameters)
    plan = bench.entry_plan(Entry("fomm_keypoints", "fomm", "baseline"), None, recipe=False)
    fomm = apply_overrides(plan.config_copy(), args.set)
    recipe = attrs.evolve(PRIOR_RECIPE, precision=args.stage_one_precision)
    first = prior_stages(fomm, bench.profile.detector_budget, recipe=recipe)[0]
    stage_one = ensure_prior(first, bench.device, print)
    report("stage one", stage_one, args.dataset, bench.device)

    drops = tuple(int(m) for m in args.milestones.split(",") if m)
    config = refine_config(
        fomm, args.repeats / fomm.train.repeats, PriorRecipe(refine_milestones=drops)
    )
    scale_equivariance(config, args.equivariance_scale)
    config = apply_overrides(config, args.set_second)
    record_detector_file(config, str(stage_one))
    videos = len(build_dataset(config, "train").videos)
    config.train.checkpoint_every = config.train.repeats * videos // config.train.batch_size
    config.train.keep_last = config.train.epochs + 1
    started = time.perf_counter()
    Trainer.from_config(
        config, args.out, resume=args.out.exists(), context=DistContext(device=bench.device)
    ).train()
    print(f"second stage: {(time.perf_counter() - started) / 60:.1f} min")
    print("| step | spread (px) | share of the figure | probe R^2 |")
    print("|---:|---:|---:|---:|")
    for step, checkpoint in list_checkpoints(args.out / "checkpoints"):
        info = prior_diagnostics(checkpoint, args.dataset, bench.device)
        share = info["keypoint_spread_px"] / info["figure_height_px"]
        print(
            f"| {step} | {info['keypoint_spread_px']:.2f} | {share:.0%} | {info['probe_r2']:.3f} |"
        )


def report(what: str, checkpoint: Path, dataset: Path, device: torch.device) -> None:
    """One line of a checkpoint's diagnostics."""
    info = prior_diagnostics(checkpoint, dataset, device)
    print(
        f"{what}: {info['steps']} steps, spread {info['keypoint_spread_px']:.2f} px of a "
        f"{info['figure_height_px']:.1f} px figure, probe R^2 {info['probe_r2']:.3f} (the "
        f"joints' centroid {info['centroid_probe_r2']:.3f})"
    )


if __name__ == "__main__":
    main()
