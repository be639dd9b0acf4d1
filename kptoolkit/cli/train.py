"""`kptoolkit train`: train one masker x generator pair from a config (torchrun-aware)."""

from __future__ import annotations

import argparse
from pathlib import Path

from kptoolkit.cli.config import add_set_argument


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of `kptoolkit train`."""
    parser.add_argument("--config", help="experiment YAML (default: the built-in synthetic-64)")
    parser.add_argument("--masker", help="masker name (default: the config's, else natural)")
    parser.add_argument("--generator", help="generator name (default: the config's)")
    parser.add_argument(
        "--kp-checkpoint", help="keypoint detector: official FOMM file or a kptoolkit run"
    )
    parser.add_argument("--out", help="run directory (default: runs/<config>/<masker>+<gen>)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_set_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Build and train; prints where the run went."""
    from kptoolkit.cli.config import resolve
    from kptoolkit.engine.distributed import init_distributed, shutdown_distributed
    from kptoolkit.engine.trainer import Trainer
    from kptoolkit.experiment.plan import plan_experiment

    # --set after the component choice, so that masker.params.* reach the chosen masker
    config = resolve(args.config, args.overrides, args.masker, args.generator)
    context = init_distributed(args.device)
    try:
        # resolved once, for this device: every incompatibility reported before any tensor
        plan = plan_experiment(config, args.kp_checkpoint, device=context.device)
        pair = plan.pair
        out = Path(args.out) if args.out else Path("runs") / config.name / pair
        trainer = Trainer(
            plan, out, resume=args.resume, context=context, progress=not args.no_progress
        )
        if context.is_main:
            numerics = trainer.numerics
            print(f"{pair}: training in {numerics.describe()}; {numerics.hardware.summary()}")
        result = trainer.train()
    finally:
        shutdown_distributed()
    if context.is_main:
        losses = ", ".join(f"{k}={v:.4f}" for k, v in result.last_losses.items())
        print(f"{pair}: {result.describe()} in {result.seconds:.1f} s -> {result.out_dir}")
        print(f"last losses: {losses}")
        print(f"checkpoint: {result.checkpoint}")
    return 0
