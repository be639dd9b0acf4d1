"""`kptoolkit metrics`: score generated videos against real ones (PNG folders, stacked PNGs)."""

from __future__ import annotations

import argparse

DEFAULT_METRICS = ("l1", "psnr", "ssim")
BY_KIND = {"pose": ("akd", "mkr"), "identity": ("aed",)}


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of `kptoolkit metrics`."""
    parser.add_argument("--real", required=True, help="folder of real test videos")
    parser.add_argument("--fake", required=True, help="folder of generated videos (e.g. png/)")
    parser.add_argument(
        "--evaluator",
        action="append",
        default=[],
        help="pose / identity evaluator for AKD, MKR, AED (repeatable), e.g. synthetic_pose",
    )
    parser.add_argument(
        "--evaluator-set",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="parameters for the evaluators, e.g. root=data/puppets",
    )
    parser.add_argument("--metrics", help="comma list (default: l1,psnr,ssim + evaluator ones)")
    parser.add_argument("--frame-width", type=int, help="frame width of stacked images")
    parser.add_argument("--batch-size", type=int, default=32)


def run(args: argparse.Namespace) -> int:
    """Build metrics and evaluators, score, print one line per metric."""
    from kptoolkit.config import parse_override_value
    from kptoolkit.engine.evaluate import evaluate_folders
    from kptoolkit.errors import ConfigError
    from kptoolkit.registry import EVALUATORS, METRICS

    params = {}
    for item in args.evaluator_set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--evaluator-set '{item}' is not of the form key=value")
        params[key] = parse_override_value(value)
    evaluators = [EVALUATORS.create(name, **params) for name in args.evaluator]
    if args.metrics:
        names = [n.strip() for n in args.metrics.split(",") if n.strip()]
    else:
        names = list(DEFAULT_METRICS)
        for evaluator in evaluators:
            names += BY_KIND.get(evaluator.kind, ())
    metrics = {name: METRICS.create(name) for name in names}
    scores, missing = evaluate_folders(
        args.real, args.fake, metrics, evaluators, args.batch_size, args.frame_width
    )
    for name, value in scores.items():
        print(f"{name:>6}  {value:.4f}")
    if missing:
        print(f"no generated video for {len(missing)} real one(s): {', '.join(missing[:5])}")
    return 0
